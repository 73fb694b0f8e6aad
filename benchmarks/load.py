"""Load test: the real app on loopback, N gradio_client runs submitted at once; each must complete or be
told that the queue is full, and the server must answer afterwards.

    python -m benchmarks load [--clients 8] [--queue-size 16] [--iterations 40] [--max-side 32] [--width 8] [--json]
    python -m benchmarks load --replay [--clients 30] [--requests 5] [--json]     # replay viewers beside a live run
    python -m benchmarks load --crowd [--small] [--json]    # a greedy visitor, replay viewers and honest live clients
    python -m benchmarks load --abandoned 10 [--json]       # runs joined and never read: memory and temp disk
    python -m benchmarks load --classroom [--small] [--one-address] [--app-root DIR]   # issue 32: a class of 40

The app is built by ``app.make_app`` (the Space's own queue settings, ``--queue-size`` aside) and served on
127.0.0.1 in this process; nothing leaves the machine. Every client is released by one barrier, so the
submissions arrive together. Afterwards one more client runs a short job, timed: the server still serves.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from .options import parser  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc (Linux); NaN elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def serve(queue_size: int):
    """Launch the app on loopback; returns (blocks, url)."""
    from app import make_app
    from demo.ui import launch_options

    demo = make_app(queue_size=queue_size)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    return demo, url


def new_client(url: str, headers: dict | None = None) -> Client:
    """A gradio_client on ``url`` that downloads into its own temporary folder."""
    return Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"), headers=headers)


def proxied_serve(queue_size: int):
    """``serve`` with the app trusting one proxy hop (X-Forwarded-For names the visitor, as on a Space)."""
    old = os.environ.get("SPECTRAL_BIAS_LAB_PROXY_HOPS")
    os.environ["SPECTRAL_BIAS_LAB_PROXY_HOPS"] = "1"
    try:
        return serve(queue_size)
    finally:
        if old is None:
            os.environ.pop("SPECTRAL_BIAS_LAB_PROXY_HOPS")
        else:
            os.environ["SPECTRAL_BIAS_LAB_PROXY_HOPS"] = old


def one_client(url: str, image: str, run_args: dict, barrier: threading.Barrier, timeout: float) -> dict:
    """Submit one run after the barrier; its outcome: completed, queue_full or error (with the message)."""
    client = new_client(url)
    barrier.wait()
    t0 = time.perf_counter()
    try:
        job = client.submit(image=handle_file(image), api_name="/run", **run_args)
        final = job.result(timeout=timeout)
        ok = str(final[6]).startswith("Done")
        return dict(outcome="completed" if ok else "error", seconds=time.perf_counter() - t0, status=final[6])
    except Exception as err:  # the client reports queue-full as an exception; anything else is an error
        text = str(err)
        full = any(
            k in text.lower()
            for k in ("queue is full", "queue full", "already waiting", "already running", "share of the queue")
        )
        kind = "queue_full" if full else "error"
        return dict(outcome=kind, seconds=time.perf_counter() - t0, status=f"{type(err).__name__}: {text}"[:300])
    finally:
        client.close()


def load_test(
    clients: int = 8,
    queue_size: int = 16,
    iterations: int = 40,
    max_side: int = 32,
    width: int = 8,
    timeout: float = 600.0,
    image: str | None = None,
) -> dict:
    """Serve the app, run ``clients`` concurrent submissions, check it still answers; a summary dict."""
    from demo.session import STOPS

    image = image or str(ROOT / "assets" / "house256.png")
    run_args = dict(iterations=iterations, max_side=max_side, width=width, lr=0.01, compare=True)
    demo, url = serve(queue_size)
    rss_before = rss_mb()
    try:
        barrier = threading.Barrier(clients)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(one_client, url, image, run_args, barrier, timeout) for _ in range(clients)]
            results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
        after = new_client(url)
        t1 = time.perf_counter()
        try:
            final = after.predict(image=handle_file(image), api_name="/run", **{**run_args, "iterations": 10})
            responsive, after_status = str(final[6]).startswith("Done"), final[6]
        except (AppError, OSError) as err:
            responsive, after_status = False, str(err)
        finally:
            after.close()
        after_s = time.perf_counter() - t1
        active = STOPS.active()
    finally:
        demo.close()
    done = [r["seconds"] for r in results if r["outcome"] == "completed"]
    count = {k: sum(r["outcome"] == k for r in results) for k in ("completed", "queue_full", "error")}
    return {
        "clients": clients,
        "queue_size": queue_size,
        "run": run_args,
        **count,
        "errors_seen": [r["status"] for r in results if r["outcome"] == "error"],
        "wall_s": round(wall, 2),
        "completed_latency_s": {
            "median": round(statistics.median(done), 2) if done else None,
            "max": round(max(done), 2) if done else None,
        },
        "refused_after_s": [round(r["seconds"], 2) for r in results if r["outcome"] == "queue_full"],
        "responsive_after": responsive,
        "after_run_s": round(after_s, 2),
        "after_status": after_status,
        "runs_left_active": active,
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_mb(), 1),
    }


def one_viewer(url: str, barrier: threading.Barrier, requests: int, seed: int, headers: dict | None = None) -> dict:
    """A replay viewer: after the barrier, ``requests`` scrubs of random experiments, lanes and iterations."""
    import random

    from demo import replays

    rng = random.Random(seed)
    experiments = [name for _, name in replays.experiment_choices()]
    lanes = [name for _, name in replays.lane_choices()]
    top, step = replays.last_iteration(), replays.frame_step()
    client = new_client(url, headers)
    barrier.wait()
    seconds, errors = [], []
    try:
        for _ in range(requests):
            args = (
                rng.choice(experiments),
                rng.choice(lanes),
                rng.choice(["", "vanilla"]),
                rng.randrange(0, top, step),
            )
            t0 = time.perf_counter()
            try:
                out = client.predict(*args, api_name="/replay")
                assert len(out) == len(replays.REPLAY_OUTPUTS) and out[1]
                seconds.append(time.perf_counter() - t0)
            except Exception as err:  # noqa: BLE001 - every failure is counted and reported
                errors.append(f"{type(err).__name__}: {err}"[:200])
    finally:
        client.close()
    return dict(seconds=seconds, errors=errors)


def replay_server_ms(rounds: int = 40) -> dict:
    """The replay endpoint's server time: its function and Gradio's postprocessing of the outputs, in process."""
    import random

    from demo import replays
    from demo.ui import build_demo

    blocks = build_demo()
    fn = next(f for f in blocks.fns.values() if f.api_name == "replay")
    rng = random.Random(0)
    experiments = [name for _, name in replays.experiment_choices()]
    lanes = [name for _, name in replays.lane_choices()]
    times = []
    for _ in range(rounds):
        it = rng.randrange(0, replays.last_iteration(), replays.frame_step())
        args = (rng.choice(experiments), rng.choice(lanes), "vanilla", it)
        t0 = time.perf_counter()
        values = replays.replay(*args)
        for block, value in zip(fn.outputs, values):
            block.postprocess(value["value"] if isinstance(value, dict) and "value" in value else value)
        times.append((time.perf_counter() - t0) * 1000)
    blocks.close()
    return {
        "median": round(statistics.median(times), 1),
        "p90": round(sorted(times)[int(0.9 * len(times))], 1),
        "max": round(max(times), 1),
        "rounds": rounds,
    }


def replay_load_test(clients: int = 30, requests: int = 5, live_iterations: int = 400, timeout: float = 300.0) -> dict:
    """Serve the app, start one live run (CPU-bound, as a visitor's), then ``clients`` replay viewers at once."""
    image = str(ROOT / "assets" / "house256.png")
    server = replay_server_ms()
    from demo.app import QUEUE_SIZE

    demo, url = serve(QUEUE_SIZE)
    try:
        alone = one_viewer(url, threading.Barrier(1), 20, 99)["seconds"]  # one viewer, nothing else running
        live = new_client(url)
        job = live.submit(image=handle_file(image), api_name="/run", iterations=live_iterations, compare=True)
        time.sleep(3)  # the live run is stepping
        barrier = threading.Barrier(clients)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda i: one_viewer(url, barrier, requests, i), range(clients)))
        wall = time.perf_counter() - t0
        live_busy = not job.done()
        job.cancel()
        live.close()
        after = new_client(url)
        t1 = time.perf_counter()
        try:
            responsive = len(after.predict(api_name="/replay")) > 0
        except (AppError, OSError):
            responsive = False
        after_s = time.perf_counter() - t1
        after.close()
    finally:
        demo.close()
    seconds = sorted(s for r in results for s in r["seconds"])
    errors = [e for r in results for e in r["errors"]]
    return {
        "mode": "replay",
        "clients": clients,
        "requests_each": requests,
        "answered": len(seconds),
        "errors": len(errors),
        "errors_seen": errors[:5],
        "live_run_busy_throughout": live_busy,
        "wall_s": round(wall, 2),
        "latency_s": {
            "median": round(statistics.median(seconds), 3) if seconds else None,
            "p90": round(seconds[int(0.9 * len(seconds))], 3) if seconds else None,
            "max": round(seconds[-1], 3) if seconds else None,
        },
        "server_ms": server,
        "one_viewer_idle_s": {"median": round(statistics.median(alone), 3), "max": round(max(alone), 3)},
        "responsive_after": responsive,
        "after_s": round(after_s, 2),
    }


#: Text that must never reach a visitor: tracebacks, OS errors, Gradio's own preprocessing line, temp paths.
LEAKS = ("Traceback", "Errno", "Could not preprocess", tempfile.gettempdir() + "/", 'File "')


def leaked(message: str) -> str | None:
    """The forbidden fragment ``message`` shows (None when it is one clean line of ours)."""
    if "\n" in message.strip():
        return "several lines"
    return next((k for k in LEAKS if k in message), None)


def temp_usage() -> dict:
    """Bytes and files under the app's download root, and how many stop files exist."""
    from demo.exports import download_root
    from demo.session import STOP_DIR

    files = [p for p in download_root().rglob("*") if p.is_file()] if download_root().is_dir() else []
    stops = len(list(STOP_DIR.glob("*"))) if STOP_DIR.is_dir() else 0
    return {"mb": round(sum(p.stat().st_size for p in files) / 2**20, 2), "files": len(files), "stop_files": stops}


def settled_rss_mb() -> float:
    """RSS after a garbage collection and glibc's malloc_trim (freed memory handed back), i.e. what is in use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the plain figure
        pass
    return rss_mb()


class Raw:
    """A visitor that speaks Gradio's HTTP protocol directly (as a script would): uploads, joins the queue and
    never reads the stream, or sends values no client library would (NaN, 10^400)."""

    def __init__(self, url: str, address: str) -> None:
        self.url, self.headers = url.rstrip("/") + "/", {"X-Forwarded-For": address}
        config = httpx.get(self.url + "config", timeout=30).json()
        self.fn = {d.get("api_name"): d["id"] for d in config["dependencies"] if d.get("api_name")}

    def upload(self, path: str) -> dict:
        with open(path, "rb") as fh:
            r = httpx.post(self.url + "gradio_api/upload", files={"files": fh}, headers=self.headers, timeout=30)
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}

    def join(self, api: str, data: list, session: str) -> tuple[int, str]:
        """POST /queue/join; (status code, text) of the answer (the event is never read)."""
        body = {"data": data, "fn_index": self.fn[api], "session_hash": session, "event_data": None, "trigger_id": None}
        r = httpx.post(
            self.url + "gradio_api/queue/join",
            content=json_dumps(body),
            headers={**self.headers, "content-type": "application/json"},
            timeout=30,
        )
        return r.status_code, r.text

    def result(self, api: str, data: list, session: str, timeout: float = 60) -> dict:
        """Join and read the stream to the end: the final message (its ``success`` and ``output``)."""
        code, text = self.join(api, data, session)
        if code != 200:
            return {"success": False, "output": {"error": f"HTTP {code}"}}
        final: dict = {}
        with httpx.stream(
            "GET",
            self.url + "gradio_api/queue/data",
            params={"session_hash": session},
            headers=self.headers,
            timeout=timeout,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        final = msg
                    if msg.get("msg") == "close_stream" or final:
                        break
        return final


def json_dumps(obj: object) -> str:
    """JSON that may hold NaN and huge integers (what a hostile script sends)."""
    return json.dumps(obj, allow_nan=True)


def run_data(image: dict, **kw) -> list:
    """The run endpoint's inputs in order (demo.form.RunForm's fields), the page's defaults filled in."""
    from demo.form import RunForm
    from demo.settings import LIMITS, default_control

    page = dict(iterations=LIMITS.iterations, max_side=LIMITS.max_side, width=LIMITS.width, lr=LIMITS.lr)
    values = {**vars(RunForm(image)), **default_control("denoise"), **page, **kw}
    return [values[p] for p in RunForm.names()]


BAD_RUNS = [
    dict(seed=10**400),
    dict(max_side=10**400),
    dict(level=10**400),
    dict(lipschitz=float("nan")),
    dict(iterations=-1),
    dict(task="nope"),
    dict(upsample=["x"]),
    dict(width={"a": 1}),
]
BAD_REPLAYS = [
    ["denoise_house", "lam2", "vanilla", float("nan")],
    ["nope", "lam2", "", 10],
    ["denoise_house", "lam2", "vanilla", 10**400],
    [[1], "lam2", "", 10],
]


def crowd_test(small: bool = False, timeout: float = 300.0) -> dict:
    """One greedy visitor (many sessions from one address: fills its share, abandons its runs, sends bad values and
    Stops for sessions that do not exist), replay viewers and honest live clients, all at once on loopback; each
    visitor has its own X-Forwarded-For address (the app trusts one proxy hop here, as on a Space)."""
    from demo.app import QUEUE_SIZE
    from demo.session import STOPS

    viewers, honest, greedy_sessions = (6, 2, 3) if small else (30, 4, 8)
    queue_size = 4 if small else QUEUE_SIZE  # small: a share of 2, so the greedy runs take less time to end
    image = str(ROOT / "assets" / "house256.png")
    demo, url = proxied_serve(queue_size)
    turns = demo._spectral_turns
    server = replay_server_ms(20 if small else 40)
    warm = new_client(url)
    warm.predict(image=handle_file(image), iterations=10, max_side=32, width=8, api_name="/run")  # first-run costs
    warm.close()
    rss0, disk0 = settled_rss_mb(), temp_usage()
    peak = {"rss": rss0, "disk_mb": disk0["mb"]}
    t0 = time.perf_counter()
    try:
        greedy = Raw(url, "203.0.113.66")
        img = greedy.upload(image)
        abandon = dict(iterations=3000, max_side=32, width=8, lr=0.01)
        messages = []
        for i, bad in enumerate(BAD_RUNS):
            final = greedy.result("run", run_data(img, **{**abandon, "iterations": 10, **bad}), f"bad-run-{i}")
            messages.append(str((final.get("output") or {}).get("error")))
        for i, bad in enumerate(BAD_REPLAYS):
            final = greedy.result("replay", bad, f"bad-replay-{i}")
            messages.append(str((final.get("output") or {}).get("error")))
        joins = [greedy.join("run", run_data(img, **abandon), f"greedy-{i}") for i in range(greedy_sessions)]
        admitted = sum(turns.holds(f"greedy-{i}") for i in range(greedy_sessions))
        refused = greedy.result("run", run_data(img, **abandon), "greedy-one-more")  # over its share
        messages.append(str((refused.get("output") or {}).get("error")))
        stops = 0
        for i in range(50 if small else 200):
            r = httpx.post(
                url + "gradio_api/run/predict",
                content=json_dumps({"data": [], "fn_index": greedy.fn["stop"], "session_hash": f"s{i}-" + "a" * 300}),
                headers={**greedy.headers, "content-type": "application/json"},
                timeout=30,
            )
            stops += r.status_code == 200

        def honest_client(i: int) -> dict:
            client = new_client(url, {"X-Forwarded-For": f"192.0.2.{i + 1}"})
            start = time.perf_counter()
            try:
                final = client.predict(
                    image=handle_file(image), iterations=30, max_side=32, width=8, lr=0.01, api_name="/run"
                )
                ok = str(final[6]).startswith("Done")
                return dict(ok=ok, seconds=time.perf_counter() - start, status=str(final[6])[:120])
            except Exception as err:  # noqa: BLE001 - counted as an error
                return dict(ok=False, seconds=time.perf_counter() - start, status=f"{type(err).__name__}: {err}"[:200])
            finally:
                client.close()

        def sample() -> None:
            while not stop_sampling.is_set():
                peak["rss"] = max(peak["rss"], rss_mb())
                peak["disk_mb"] = max(peak["disk_mb"], temp_usage()["mb"])
                stop_sampling.wait(1.0)

        stop_sampling = threading.Event()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        barrier = threading.Barrier(viewers)
        with ThreadPoolExecutor(viewers + honest) as pool:
            live = [pool.submit(honest_client, i) for i in range(honest)]
            seen = [
                pool.submit(one_viewer, url, barrier, 5, i, {"X-Forwarded-For": f"198.51.100.{i + 1}"})
                for i in range(viewers)
            ]
            honest_results = [f.result(timeout=timeout) for f in live]
            viewer_results = [f.result(timeout=timeout) for f in seen]
        # the greedy visitor's abandoned runs end by themselves; wait for the queue to empty
        deadline = time.perf_counter() + timeout
        while any(lv for lv, _, _ in turns.events()) and time.perf_counter() < deadline:
            time.sleep(0.5)
        drained_s = time.perf_counter() - t0
        stop_sampling.set()
        time.sleep(1.0)
        rss1, disk1 = settled_rss_mb(), temp_usage()
        left = STOPS.active()
    finally:
        demo.close()
    seconds = sorted(s for r in viewer_results for s in r["seconds"])
    viewer_errors = [e for r in viewer_results for e in r["errors"]]
    return {
        "mode": "crowd",
        "small": small,
        "live_waiting": queue_size,
        "address_share": turns.share,
        "greedy": {
            "sessions": greedy_sessions,
            "admitted": admitted,
            "joins_answered": len(joins),
            "bad_values": len(messages),
            "leaks": [m for m in messages if leaked(m)],
            "messages": sorted(set(messages)),
            "stops_sent": stops,
        },
        "honest": {
            "clients": honest,
            "completed": sum(r["ok"] for r in honest_results),
            "errors": [r["status"] for r in honest_results if not r["ok"]],
            "seconds_max": round(max(r["seconds"] for r in honest_results), 1),
        },
        "viewers": {
            "clients": viewers,
            "answered": len(seconds),
            "errors": viewer_errors[:5],
            "latency_median_s": round(statistics.median(seconds), 3) if seconds else None,
            "latency_max_s": round(seconds[-1], 3) if seconds else None,
        },
        "replay_server_ms": server,
        "refused": turns.refused,
        "drained_s": round(drained_s, 1),
        "runs_left_active": left,
        "rss_mb": {"before": round(rss0, 1), "peak": round(peak["rss"], 1), "after": round(rss1, 1)},
        "temp": {"before": disk0, "peak_mb": peak["disk_mb"], "after": disk1},
    }


def abandoned_test(runs: int = 10, iterations: int = 3000, timeout: float = 600.0) -> dict:
    """``runs`` live runs at the CPU default size (128 px, width 24, compare) joined from as many addresses and never
    read: the server's RSS and temp disk before, at their peak while the runs end one after the other, and after."""
    from demo.app import QUEUE_SIZE

    demo, url = proxied_serve(max(QUEUE_SIZE, runs))
    turns = demo._spectral_turns
    image = str(ROOT / "assets" / "house256.png")
    try:
        warm = new_client(url)
        warm.predict(image=handle_file(image), iterations=10, api_name="/run")  # first-run costs
        warm.close()
        rss0, disk0 = settled_rss_mb(), temp_usage()
        peak = {"rss": rss0, "disk_mb": disk0["mb"]}
        t0 = time.perf_counter()
        for i in range(runs):
            raw = Raw(url, f"198.51.100.{i + 1}")
            code, _ = raw.join("run", run_data(raw.upload(image), iterations=iterations), f"abandoned-{i}")
            assert code == 200
        ended = []
        while time.perf_counter() - t0 < timeout:
            peak["rss"], peak["disk_mb"] = max(peak["rss"], rss_mb()), max(peak["disk_mb"], temp_usage()["mb"])
            held = sum(turns.holds(f"abandoned-{i}") for i in range(runs))
            if len(ended) < runs - held:
                ended.append(round(time.perf_counter() - t0, 1))
            if held == 0:
                break
            time.sleep(0.5)
        rss1, disk1 = settled_rss_mb(), temp_usage()
        unread = [q.qsize() for s, q in demo._queue.pending_messages_per_session.items() if s.startswith("abandoned")]
    finally:
        demo.close()
    return {
        "mode": "abandoned",
        "runs": runs,
        "iterations_asked": iterations,
        "all_ended_s": ended[-1] if ended else None,
        "ended_at_s": ended,
        "unread_messages_left": sum(unread),
        "rss_mb": {"before": round(rss0, 1), "peak": round(peak["rss"], 1), "after": round(rss1, 1)},
        "temp": {"before": disk0, "peak_mb": peak["disk_mb"], "after": disk1},
    }


def crowd_ok(r: dict, rss_bound_mb: float = 300.0, disk_bound_mb: float = 20.0) -> list[str]:
    """What failed in a crowd result (empty: every honest visitor was served and the server came back)."""
    fails = []
    if r["honest"]["completed"] != r["honest"]["clients"]:
        fails.append(f"honest clients not served: {r['honest']['errors']}")
    if r["viewers"]["errors"] or r["viewers"]["answered"] != r["viewers"]["clients"] * 5:
        fails.append(f"replay viewers failed: {r['viewers']['errors']}")
    if r["replay_server_ms"]["median"] > 200:
        fails.append(f"replay server time {r['replay_server_ms']['median']} ms at the median")
    if r["greedy"]["admitted"] > r["address_share"]:
        fails.append(f"the greedy address held {r['greedy']['admitted']} runs")
    if r["greedy"]["leaks"]:
        fails.append(f"errors that are not ours: {r['greedy']['leaks']}")
    if r["runs_left_active"] or r["temp"]["after"]["stop_files"] > r["temp"]["before"]["stop_files"]:
        fails.append("runs or stop files left behind")
    if r["rss_mb"]["after"] - r["rss_mb"]["before"] > rss_bound_mb:
        fails.append(f"RSS grew by {r['rss_mb']['after'] - r['rss_mb']['before']:.0f} MB")
    if r["temp"]["after"]["mb"] - r["temp"]["before"]["mb"] > disk_bound_mb:
        fails.append("temp disk grew")
    return fails


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--classroom" in argv:  # its own options (benchmarks/classroom.py)
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
        result = replay_load_test(args.clients if args.clients != 8 else 30, args.requests, timeout=args.timeout)
        ok = result["errors"] == 0 and result["responsive_after"]
    else:
        size = args.queue_size or QUEUE_SIZE
        result = load_test(args.clients, size, args.iterations, args.max_side, args.width, args.timeout)
        ok = result["error"] == 0 and result["responsive_after"] and result["runs_left_active"] == 0
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if ok else 1
