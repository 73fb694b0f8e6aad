"""Load test: the real app on loopback, N gradio_client runs submitted at once; each must complete or be
told that the queue is full, and the server must answer afterwards.

    python -m benchmarks.load [--clients 8] [--queue-size 16] [--iterations 40] [--max-side 32] [--width 8] [--json]
    python -m benchmarks.load --replay [--clients 30] [--requests 5] [--json]     # replay viewers beside a live run

The app is built by ``app.make_app`` (the Space's own queue settings, ``--queue-size`` aside) and served on
127.0.0.1 in this process; nothing leaves the machine. Every client is released by one barrier, so the
submissions arrive together. Afterwards one more client runs a short job, timed: the server still serves.
"""

from __future__ import annotations

import argparse
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

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

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


def one_client(url: str, image: str, run_args: dict, barrier: threading.Barrier, timeout: float) -> dict:
    """Submit one run after the barrier; its outcome: completed, queue_full or error (with the message)."""
    client = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"))
    barrier.wait()
    t0 = time.perf_counter()
    try:
        job = client.submit(image=handle_file(image), api_name="/run", **run_args)
        final = job.result(timeout=timeout)
        ok = str(final[6]).startswith("Done")
        return dict(outcome="completed" if ok else "error", seconds=time.perf_counter() - t0, status=final[6])
    except Exception as err:  # the client reports queue-full as an exception; anything else is an error
        text = str(err)
        full = "queue is full" in text.lower() or "queue full" in text.lower()
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
        after = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"))
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


def one_viewer(url: str, barrier: threading.Barrier, requests: int, seed: int) -> dict:
    """A replay viewer: after the barrier, ``requests`` scrubs of random experiments, lanes and iterations."""
    import random

    from demo import replays

    rng = random.Random(seed)
    experiments = [name for _, name in replays.experiment_choices()]
    lanes = [name for _, name in replays.lane_choices()]
    top, step = replays.last_iteration(), replays.frame_step()
    client = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"))
    barrier.wait()
    seconds, errors = [], []
    try:
        for _ in range(requests):
            args = (rng.choice(experiments), rng.choice(lanes), rng.choice(["", "vanilla"]), rng.randrange(0, top, step))
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
    return {"median": round(statistics.median(times), 1), "p90": round(sorted(times)[int(0.9 * len(times))], 1),
            "max": round(max(times), 1), "rounds": rounds}  # fmt: skip


def replay_load_test(clients: int = 30, requests: int = 5, live_iterations: int = 400, timeout: float = 300.0) -> dict:
    """Serve the app, start one live run (CPU-bound, as a visitor's), then ``clients`` replay viewers at once."""
    image = str(ROOT / "assets" / "house256.png")
    server = replay_server_ms()
    from demo.app import QUEUE_SIZE

    demo, url = serve(QUEUE_SIZE)
    try:
        alone = one_viewer(url, threading.Barrier(1), 20, 99)["seconds"]  # one viewer, nothing else running
        live = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"))
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
        after = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"))
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
        "latency_s": {"median": round(statistics.median(seconds), 3) if seconds else None,
                      "p90": round(seconds[int(0.9 * len(seconds))], 3) if seconds else None,
                      "max": round(seconds[-1], 3) if seconds else None},  # fmt: skip
        "server_ms": server,
        "one_viewer_idle_s": {"median": round(statistics.median(alone), 3), "max": round(max(alone), 3)},
        "responsive_after": responsive,
        "after_s": round(after_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--queue-size", type=int, default=None, help="default: the app's own (app.QUEUE_SIZE)")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--max-side", type=int, default=32)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one client waits for its result")
    p.add_argument("--json", action="store_true")
    p.add_argument("--replay", action="store_true", help="replay viewers (default 30) beside one live run")
    p.add_argument("--requests", type=int, default=5, help="replay mode: scrubs per viewer")
    args = p.parse_args(argv)
    from app import QUEUE_SIZE

    if args.replay:
        result = replay_load_test(args.clients if args.clients != 8 else 30, args.requests, timeout=args.timeout)
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
        return 0 if result["errors"] == 0 and result["responsive_after"] else 1

    result = load_test(
        args.clients, args.queue_size or QUEUE_SIZE, args.iterations, args.max_side, args.width, args.timeout
    )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    ok = result["error"] == 0 and result["responsive_after"] and result["runs_left_active"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
