"""Load tests: the real app on loopback, N gradio_client runs submitted at once; each must complete or be told that
the queue is full, and the server must answer afterwards.

    python -m benchmarks load [--clients 8] [--queue-size 16] [--iterations 40] [--max-side 32] [--width 8] [--json]
    python -m benchmarks load --replay [--clients 30] [--requests 5] [--json]     # replay viewers beside a live run
    python -m benchmarks load --crowd [--small] [--json]    # a greedy visitor, replay viewers and honest live clients
    python -m benchmarks load --abandoned 10 [--json]       # runs joined and never read: memory and temp disk
    python -m benchmarks load --classroom [--small] [--one-address] [--app-root DIR]   # issue 32: a class of 40

The app (``app.make_app``, its queue settings but ``--queue-size``) is served on 127.0.0.1 in this process; nothing
leaves the machine. One barrier releases every client at once; afterwards a short run shows that the server serves.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gradio_client import handle_file

from .harness import IMAGE, App, Footprint, Visitor, failure, new_client, rounded, rss_mb, serve, spread
from .options import parser

#: What the client's exception says when the app refused a run for a full queue or share.
FULL = ("queue is full", "queue full", "already waiting", "already running", "share of the queue")


def together(n: int, fn: Callable[[int, threading.Barrier], dict]) -> tuple[list[dict], float]:
    """``fn(i, barrier)`` for i < ``n`` in as many threads, released by one barrier: the results, the wall seconds."""
    barrier, t0 = threading.Barrier(n), time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: fn(i, barrier), range(n)))
    return results, time.perf_counter() - t0


def live_client(url: str, run: dict, barrier: threading.Barrier, timeout: float, headers: dict | None = None) -> dict:
    """Submit one run after ``barrier``; its outcome (completed, queue_full or error), seconds and status line."""
    client = new_client(url, headers)
    barrier.wait()
    t0 = time.perf_counter()
    try:
        final = client.submit(image=handle_file(str(IMAGE)), api_name="/run", **run).result(timeout=timeout)
        ok = str(final[6]).startswith("Done")
        return dict(outcome="completed" if ok else "error", seconds=time.perf_counter() - t0, status=final[6])
    except Exception as err:  # noqa: BLE001 - the client reports queue-full as an exception; the rest are errors
        kind = "queue_full" if any(k in str(err).lower() for k in FULL) else "error"
        return dict(outcome=kind, seconds=time.perf_counter() - t0, status=failure(err))
    finally:
        client.close()


def warm(url: str, **run: object) -> None:
    """A first short run (imports, the convolution path's choice): not measured."""
    client = new_client(url)
    try:
        client.predict(image=handle_file(str(IMAGE)), iterations=10, api_name="/run", **run)
    finally:
        client.close()


def load_test(
    clients: int = 8,
    queue_size: int = 16,
    iterations: int = 40,
    max_side: int = 32,
    width: int = 8,
    timeout: float = 600,
) -> dict:
    """Serve the app, run ``clients`` concurrent submissions, check it still answers; a summary dict."""
    from demo.session import STOPS

    run = dict(iterations=iterations, max_side=max_side, width=width, lr=0.01, compare=True)
    demo, url = serve(queue_size)
    rss_before = rss_mb()
    try:
        results, wall = together(clients, lambda i, barrier: live_client(url, run, barrier, timeout))
        after = live_client(url, {**run, "iterations": 10}, threading.Barrier(1), timeout)
        active = STOPS.active()
    finally:
        demo.close()
    of = {k: [r for r in results if r["outcome"] == k] for k in ("completed", "queue_full", "error")}
    out = dict(clients=clients, queue_size=queue_size, run=run, **{k: len(rs) for k, rs in of.items()})
    out.update(errors_seen=[r["status"] for r in of["error"]], wall_s=round(wall, 2))
    out["completed_latency_s"] = spread([r["seconds"] for r in of["completed"]], 2, "median max")
    out["refused_after_s"] = [round(r["seconds"], 2) for r in of["queue_full"]]
    out.update(responsive_after=after["outcome"] == "completed", after_run_s=round(after["seconds"], 2))
    out.update(after_status=after["status"], runs_left_active=active, rss_mb_before=rounded(rss_before, 1))
    return out | {"rss_mb_after": rounded(rss_mb(), 1)}


def scrub(rng: random.Random, other: str | None = None) -> tuple:
    """A random replay: experiment, lane, the lane beside it ("" or vanilla, or ``other``), iteration."""
    from demo import experiments

    experiment, lane = rng.choice(experiments.experiment_choices())[1], rng.choice(experiments.lane_choices())[1]
    other = rng.choice(["", "vanilla"]) if other is None else other
    return experiment, lane, other, rng.randrange(0, experiments.last_iteration(), experiments.frame_step())


def one_viewer(url: str, barrier: threading.Barrier, requests: int, seed: int, headers: dict | None = None) -> dict:
    """A replay viewer: after the barrier, ``requests`` scrubs of random experiments, lanes and iterations."""
    from demo.experiments import REPLAY_OUTPUTS

    rng, client, seconds, errors = random.Random(seed), new_client(url, headers), [], []
    barrier.wait()
    try:
        for _ in range(requests):
            args, t0 = scrub(rng), time.perf_counter()
            try:
                out = client.predict(*args, api_name="/replay")
                assert len(out) == len(REPLAY_OUTPUTS) and out[1]
                seconds.append(time.perf_counter() - t0)
            except Exception as err:  # noqa: BLE001 - every failure is counted and reported
                errors.append(failure(err, 200))
    finally:
        client.close()
    return dict(seconds=seconds, errors=errors)


def replay_server_ms(rounds: int = 40) -> dict:
    """The replay endpoint's server time: its function and Gradio's postprocessing of the outputs, in process."""
    from demo import experiments
    from demo.ui import build_demo

    blocks, rng, times = build_demo(), random.Random(0), []
    fn = next(f for f in blocks.fns.values() if f.api_name == "replay")
    for _ in range(rounds):
        args, t0 = scrub(rng, "vanilla"), time.perf_counter()
        for block, value in zip(fn.outputs, experiments.replay(*args)):
            block.postprocess(value["value"] if isinstance(value, dict) and "value" in value else value)
        times.append((time.perf_counter() - t0) * 1000)
    blocks.close()
    return {**spread(times, 1), "rounds": rounds}


def replay_load_test(clients: int = 30, requests: int = 5, live_iterations: int = 400) -> dict:
    """Serve the app, start one live run (CPU-bound, as a visitor's), then ``clients`` replay viewers at once."""
    from demo.app import QUEUE_SIZE

    server = replay_server_ms()
    demo, url = serve(QUEUE_SIZE)
    try:
        alone = one_viewer(url, threading.Barrier(1), 20, 99)["seconds"]  # one viewer, nothing else running
        live = new_client(url)
        job = live.submit(image=handle_file(str(IMAGE)), api_name="/run", iterations=live_iterations, compare=True)
        time.sleep(3)  # the live run is stepping
        results, wall = together(clients, lambda i, barrier: one_viewer(url, barrier, requests, i))
        live_busy = not job.done()
        job.cancel()
        live.close()
        after = one_viewer(url, threading.Barrier(1), 1, 7)
    finally:
        demo.close()
    seconds, errors = [s for r in results for s in r["seconds"]], [e for r in results for e in r["errors"]]
    out = dict(mode="replay", clients=clients, requests_each=requests, answered=len(seconds), errors=len(errors))
    out.update(errors_seen=errors[:5], live_run_busy_throughout=live_busy, wall_s=round(wall, 2))
    out.update(latency_s=spread(seconds, 3), server_ms=server, one_viewer_idle_s=spread(alone, 3, "median max"))
    return out | {"responsive_after": bool(after["seconds"]), "after_s": round(sum(after["seconds"]), 2)}


#: Text that must never reach a visitor: tracebacks, OS errors, Gradio's own preprocessing line, temp paths.
LEAKS = ("Traceback", "Errno", "Could not preprocess", tempfile.gettempdir() + "/", 'File "')
#: Values no client library sends: through the run endpoint (one each) and the replay's.
BAD_RUNS = [dict(seed=10**400), dict(max_side=10**400), dict(level=10**400), dict(lipschitz=float("nan"))]
BAD_RUNS += [dict(iterations=-1), dict(task="nope"), dict(upsample=["x"]), dict(width={"a": 1})]
BAD_REPLAYS = [["denoise_house", "lam2", "vanilla", float("nan")], ["nope", "lam2", "", 10]]
BAD_REPLAYS += [["denoise_house", "lam2", "vanilla", 10**400], [[1], "lam2", "", 10]]


def leaked(message: str) -> str | None:
    """The forbidden fragment ``message`` shows (None when it is one clean line of ours)."""
    if "\n" in message.strip():
        return "several lines"
    return next((k for k in LEAKS if k in message), None)


def greedy(url: str, turns: object, sessions: int, stops: int) -> dict:
    """One address as a script: bad values through run and replay, ``sessions`` runs joined and abandoned, one more
    over its share, and ``stops`` Stops for 300-character session hashes that hold no run."""
    me = Visitor(url, "203.0.113.66", "greedy")
    image, abandon, messages = me.upload(str(IMAGE))[1], dict(iterations=3000, max_side=32, width=8, lr=0.01), []
    asks = [("run", me.app.run_data(image, **{**abandon, "iterations": 10, **bad})) for bad in BAD_RUNS]
    for i, (fn, data) in enumerate([*asks, *(("replay", bad) for bad in BAD_REPLAYS)]):
        me.session = f"bad-{fn}-{i}"
        messages.append(str(me.call("bad", fn, data, 60.0).message))
    joins = [me.join("run", me.app.run_data(image, **abandon), f"greedy-{i}") for i in range(sessions)]
    admitted = sum(turns.holds(f"greedy-{i}") for i in range(sessions))
    me.session = "greedy-one-more"  # over its share
    messages.append(str(me.call("one_more", "run", me.app.run_data(image, **abandon), 60.0).message))
    sent = sum(me.stop(f"s{i}-" + "a" * 300) == 200 for i in range(stops))
    me.close()
    out = dict(sessions=sessions, admitted=admitted, joins_answered=len(joins), bad_values=len(messages))
    return out | dict(leaks=[m for m in messages if leaked(m)], messages=sorted(set(messages)), stops_sent=sent)


def crowd_test(small: bool = False, timeout: float = 300.0) -> dict:
    """One greedy visitor (``greedy``), replay viewers and honest live clients, all at once on loopback; each visitor
    has its own X-Forwarded-For address (the app trusts one proxy hop here, as on a Space)."""
    from demo.app import QUEUE_SIZE
    from demo.session import STOPS

    viewers, honest, sessions = (6, 2, 3) if small else (30, 4, 8)
    queue_size = 4 if small else QUEUE_SIZE  # small: a share of 2, so the greedy runs take less time to end
    demo, url = serve(queue_size, proxied=True)
    turns, server = demo._spectral_turns, replay_server_ms(20 if small else 40)
    honest_run = dict(iterations=30, max_side=32, width=8, lr=0.01)

    def visitor(i: int, barrier: threading.Barrier) -> dict:
        if i < honest:
            return live_client(url, honest_run, barrier, timeout, {"X-Forwarded-For": f"192.0.2.{i + 1}"})
        return one_viewer(url, barrier, 5, i - honest, {"X-Forwarded-For": f"198.51.100.{i - honest + 1}"})

    try:
        warm(url, max_side=32, width=8)
        memory, t0 = Footprint(), time.perf_counter()
        bad = greedy(url, turns, sessions, 50 if small else 200)
        results, _ = together(viewers + honest, visitor)
        deadline = time.perf_counter() + timeout  # the greedy visitor's abandoned runs end by themselves
        while any(lv for lv, _, _ in turns.events()) and time.perf_counter() < deadline:
            time.sleep(0.5)
        drained_s, footprint, left = time.perf_counter() - t0, memory.report(pause=1.0), STOPS.active()
    finally:
        demo.close()
    lives, seen = results[:honest], results[honest:]
    seconds, failed = [s for r in seen for s in r["seconds"]], [r for r in lives if r["outcome"] != "completed"]
    out = dict(mode="crowd", small=small, live_waiting=queue_size, address_share=turns.share, greedy=bad)
    out["honest"] = dict(
        clients=honest, completed=honest - len(failed), errors=[str(r["status"])[:200] for r in failed]
    )
    out["honest"]["seconds_max"] = round(max(r["seconds"] for r in lives), 1)
    out["viewers"] = dict(clients=viewers, answered=len(seconds), errors=[e for r in seen for e in r["errors"]][:5])
    out["viewers"].update({f"latency_{k}_s": v for k, v in spread(seconds, 3, "median max").items()})
    out.update(replay_server_ms=server, refused=turns.refused, drained_s=round(drained_s, 1), runs_left_active=left)
    return out | footprint


def abandoned_test(runs: int = 10, iterations: int = 3000, timeout: float = 600.0) -> dict:
    """``runs`` live runs at the CPU default size (128 px, width 24, compare) joined from as many addresses and never
    read: the server's RSS and temp disk before, at their peak while the runs end one after the other, and after."""
    from demo.app import QUEUE_SIZE

    demo, url = serve(max(QUEUE_SIZE, runs), proxied=True)
    turns, ended = demo._spectral_turns, []
    try:
        warm(url)
        app, memory, t0 = App.read(url), Footprint(every=0.5), time.perf_counter()
        for i in range(runs):
            me = Visitor(app, f"198.51.100.{i + 1}", "abandoned")
            code, _ = me.join("run", app.run_data(me.upload(str(IMAGE))[1], iterations=iterations), f"abandoned-{i}")
            me.close()
            assert code == 200
        while time.perf_counter() - t0 < timeout:
            held = sum(turns.holds(f"abandoned-{i}") for i in range(runs))
            if len(ended) < runs - held:
                ended.append(round(time.perf_counter() - t0, 1))
            if held == 0:
                break
            time.sleep(0.5)
        footprint = memory.report()
        unread = [q.qsize() for s, q in demo._queue.pending_messages_per_session.items() if s.startswith("abandoned")]
    finally:
        demo.close()
    out = dict(mode="abandoned", runs=runs, iterations_asked=iterations, all_ended_s=ended[-1] if ended else None)
    return out | dict(ended_at_s=ended, unread_messages_left=sum(unread), **footprint)


def crowd_ok(r: dict, rss_bound_mb: float = 300.0, disk_bound_mb: float = 20.0) -> list[str]:
    """What failed in a crowd result (empty: every honest visitor was served and the server came back)."""
    h, v, g, rss, temp = r["honest"], r["viewers"], r["greedy"], r["rss_mb"], r["temp"]
    ms, stops = r["replay_server_ms"]["median"], temp["after"]["stop_files"] > temp["before"]["stop_files"]
    checks = [
        (h["completed"] != h["clients"], f"honest clients not served: {h['errors']}"),
        (v["errors"] or v["answered"] != v["clients"] * 5, f"replay viewers failed: {v['errors']}"),
        (ms > 200, f"replay server time {ms} ms at the median"),
        (g["admitted"] > r["address_share"], f"the greedy address held {g['admitted']} runs"),
        (g["leaks"], f"errors that are not ours: {g['leaks']}"),
        (r["runs_left_active"] or stops, "runs or stop files left behind"),
        (rss["after"] - rss["before"] > rss_bound_mb, f"RSS grew by {rss['after'] - rss['before']:.0f} MB"),
        (temp["after"]["mb"] - temp["before"]["mb"] > disk_bound_mb, "temp disk grew"),
    ]
    return [message for failed, message in checks if failed]


def main(argv: list[str] | None = None) -> int:
    """Run the load test ``argv`` names (``--classroom``: benchmarks/classroom.py); 0 when it held."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--classroom" in argv:  # its own options
        from .classroom import main as classroom

        return classroom([a for a in argv if a != "--classroom"])
    p = parser("load", __doc__, width=8, json=False)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--queue-size", type=int, default=None, help="default: the app's own (app.QUEUE_SIZE)")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--max-side", type=int, default=32)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one client waits for its result")
    p.add_argument("--replay", action="store_true", help="replay viewers (default 30) beside one live run")
    p.add_argument("--requests", type=int, default=5, help="replay mode: scrubs per viewer")
    p.add_argument("--crowd", action="store_true", help="a greedy visitor, 30 replay viewers, 4 honest live clients")
    p.add_argument("--small", action="store_true", help="crowd mode: 6 viewers, 2 honest clients (the test's)")
    p.add_argument("--abandoned", type=int, default=0, help="N default-size runs joined and never read: RSS and disk")
    p.add_argument("--classroom", action="store_true", help="40 students and a flood (--classroom --help: its options)")
    args = p.parse_args(argv)
    from app import QUEUE_SIZE

    if args.abandoned:
        result = abandoned_test(args.abandoned, timeout=args.timeout)
        ok = result["unread_messages_left"] <= args.abandoned and result["all_ended_s"]
    elif args.crowd:
        result = crowd_test(small=args.small, timeout=args.timeout)
        result["fails"] = crowd_ok(result)
        ok = not result["fails"]
    elif args.replay:
        result = replay_load_test(args.clients if args.clients != 8 else 30, args.requests)
        ok = result["errors"] == 0 and result["responsive_after"]
    else:
        size = args.queue_size or QUEUE_SIZE
        result = load_test(args.clients, size, args.iterations, args.max_side, args.width, args.timeout)
        ok = result["error"] == 0 and result["responsive_after"] and result["runs_left_active"] == 0
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if ok else 1
