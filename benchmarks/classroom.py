"""The classroom test (issue 32, item 8): a class of 40 students on the public Space at once, and what may hurt it.

    python -m benchmarks load --classroom [--small] [--one-address] [--app-root DIR] [--out FILE] [--json]

The app runs in a subprocess (``harness.Server``); every visitor speaks Gradio's queue protocol as the page does, with
its own session hash and address (``--one-address``: one school NAT). After a warm-up, each student opens the page,
scrubs replays, presses Play and Next lesson; ``live`` of them run an image (one presses Stop) while one address floods
the queue and one visitor reads slowly. Then: the downloads, a fresh replay, a 20000×16 PNG. All ends by
``Plan.deadline_s``; ``verdict`` lists the issue's done-when criteria that failed.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import io
import json
import multiprocessing
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from PIL import Image

from .harness import (
    IMAGE,
    ROOT,
    App,
    Call,
    Server,
    Visitor,
    failure,
    file_urls,
    largest_gap,
    percentile,
    rounded,
    rss_mb,
    stats,
)
from .options import parser

REPORTS = ROOT / "reports" / "public_space"
#: Events a student (or the slow reader) waits for; one that never completes is an honest event lost.
HONEST = ("page", "page_load", "replay", "play", "next_lesson", "upload", "live_run", "slow_reader")
#: The issue's bounds (done-when): replays and Stop within 1 s at p95, the long-thin image within 300 MB more memory.
REPLAY_P95_S, STOP_S, THIN_MB = 1.0, 1.0, 300.0
LATE = "not sent: the class's time was up"
OVER = "answered events (a refusal or an HTTP error is an answer); ok_*: successful ones only"


@dataclass(frozen=True)
class Plan:
    """What the class does (``SMALL`` is the test suite's, under a minute on 2 cores)."""

    students: int = 40
    live: int = 8  # students who also press Run
    scrubs: int = 3  # replay scrubs per student
    live_iterations: int = 300
    stop_iterations: int = 3000  # the run Stop ends (it must still be running when Stop is pressed)
    stop_after_frames: int = 3
    max_side: int = 32
    width: int = 8
    flood_joins: int = 2100
    flood_fn: str = "replay"
    flood_workers: int = 16
    flood_seconds: float = 150.0  # the flood stops sending after this long, whatever it sent
    flood_delay_s: float = 3.0  # after the class starts
    slow_pause_s: float = 4.0
    slow_iterations: int = 300
    thin: tuple[int, int] = (20000, 16)  # width × height
    thin_iterations: int = 10
    thin_timeout_s: float = 60.0
    stagger_s: float = 5.0  # students open the page within this many seconds of each other
    one_address: bool = False
    deadline_s: float = 330.0  # the class (and every visitor in it) ends by then, from its start
    seed: int = 0


#: A served small class ends in about 25 s: the rest of ``deadline_s`` is room for a slow or loaded machine (beside
#: the suite's other process a live run's worker, at nice 10, was seen to step at 1/20 of its pace: 150 steps > 71 s).
SMALL = Plan(students=6, live=1, scrubs=2, live_iterations=150, stop_iterations=1000, thin_timeout_s=20.0)
SMALL = replace(SMALL, flood_joins=300, flood_workers=8, flood_seconds=20.0, flood_delay_s=1.0, stagger_s=1.0)
SMALL = replace(SMALL, slow_pause_s=2.0, slow_iterations=60, deadline_s=240.0)


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A grey 8-bit PNG of noise."""
    out = io.BytesIO()
    Image.frombytes("L", (width, height), random.Random(seed).randbytes(width * height)).save(out, "PNG")
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image from its bytes (None when it is not one)."""
    try:
        return Image.open(io.BytesIO(data)).size
    except OSError:
        return None


def tally(downloads: list[dict | None]) -> dict:
    """Runs whose downloads were fetched, those all served, and the HTTP codes of their files."""
    codes = sum((Counter((d or {}).get("codes", {})) for d in downloads), Counter())
    return {"runs": len(downloads), "ok": sum(bool(d and d["ok"]) for d in downloads), "codes": dict(codes)}


def machine() -> dict:
    """The CPU model and cores of this machine, and its load when the run started."""
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    cpu, cores, usable = model.group(1).strip() if model else "unknown", os.cpu_count(), len(os.sched_getaffinity(0))
    return dict(cpu=cpu, cores=cores, usable_cores=usable, load_avg_at_start=[round(x, 2) for x in os.getloadavg()])


def git_state(root: Path) -> dict:
    """The app tree's commit and its files changed since (the working tree may be someone's work in progress)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line]
    return {"commit": git("rev-parse", "HEAD").strip()[:12] or None, "changed_files": changed}


# Each visitor appends its Calls to one shared list (list.append is atomic) and its finished runs to ``runs``.


def student(app: App, plan: Plan, i: int, calls: list, image: bytes, end: float, role: str | None, runs: list) -> None:
    """One student's lesson: page, page-load event, scrubs, Play, Next lesson, and (``role``) Run and maybe Stop."""
    rng = random.Random(plan.seed * 1000 + i)
    me = Visitor(app, "192.0.2.10" if plan.one_address else f"198.51.100.{i + 1}", f"student{i:02d}")
    try:
        time.sleep(rng.uniform(0, plan.stagger_s))
        for kind in ["page", "page_load", *["replay"] * plan.scrubs, "play", "next_lesson"]:
            left = max(1.0, end - time.perf_counter())
            if time.perf_counter() > end:
                calls.append(Call(kind, me.who, message=LATE))
            elif kind == "page":
                calls.append(me.page())
            elif kind == "page_load":
                calls.append(me.call(kind, "page_load", [""], min(60.0, left)))  # a plain visit: no link
            elif kind == "replay":
                calls.append(me.call(kind, "replay", app.replay_args(rng), min(60.0, left)))
                time.sleep(rng.uniform(0.2, 1.0))  # dragging the slider again
            elif kind == "play":  # the slider at its end: Play starts from the first frame
                calls.append(me.call(kind, "play", app.replay_args(rng)[:3] + [app.iterations[1]], min(180.0, left)))
            else:
                calls.append(me.call(kind, "next_lesson", app.replay_args(rng)[:3] + [None], min(60.0, left)))
    except Exception as err:  # noqa: BLE001 - a harness failure is reported, not raised in a thread
        calls.append(Call("harness_error", me.who, message=failure(err)))
        role = None
    if role is None:
        me.close()
    elif time.perf_counter() > end:
        calls.extend(Call(k, me.who, message=LATE) for k in ("upload", "live_run"))
    else:
        live_run(app, plan, me, calls, image, end, role, runs)


def live_run(app: App, plan: Plan, me: Visitor, calls: list, image: bytes, end: float, role: str, runs: list) -> None:
    """Upload an image and press Run; ``role``: "run", "stop" (Stop after ``stop_after_frames`` frames) or "slow"
    (the slow reader: ``slow_pause_s`` between the messages it reads)."""
    kind = "slow_reader" if role == "slow" else "live_run"
    try:
        up, image_data = me.upload("house256.png", image)
        calls.append(up)
        if image_data is None:
            calls.append(Call(kind, me.who, message="upload failed"))
            return
        if role == "slow":
            iterations, extra, settings = plan.slow_iterations, {"pause_s": plan.slow_pause_s, "trace": []}, {}
        else:
            iterations = plan.stop_iterations if role == "stop" else plan.live_iterations
            extra, settings = {"iterations": iterations, "stopper": role == "stop"}, {"lr": 0.01}
        data = app.run_data(image_data, iterations=iterations, max_side=plan.max_side, width=plan.width, **settings)
        stop_sent = []

        def on_message(call: Call, msg: str | None) -> None:
            if role == "stop" and not stop_sent and msg == "process_generating":
                if len(call.frames) >= plan.stop_after_frames:
                    stop_sent.append(time.perf_counter() - call.t0)
                    extra.update(stop_sent_s=rounded(stop_sent[0]), stop_http=me.stop())
            elif role == "slow":  # what arrived when: a lost final message can be read from it
                if len(extra["trace"]) < 80:
                    extra["trace"].append([round(time.perf_counter() - call.t0, 2), msg])
                if msg not in ("heartbeat", None) and time.perf_counter() + plan.slow_pause_s < end:
                    time.sleep(plan.slow_pause_s)

        run = me.call(kind, "run", data, max(1.0, end - time.perf_counter()), on_message)
        if stop_sent and run.answered:
            extra["stop_delay_s"] = rounded(run.seconds - stop_sent[0])
        if run.answered and run.ok:
            extra["downloads"] = me.downloads(run)
        run.extra = extra if role == "slow" else {**extra, "status": run.status(160)}
        calls.append(run)
        runs.append((me, run))
    except Exception as err:  # noqa: BLE001
        calls.append(Call("harness_error", me.who, message=failure(err)))


def flood(app: App, plan: Plan, end: float) -> dict:
    """``flood_joins`` queue joins from one address, each with a fresh session hash, none read; bounded by ``end``.
    Sent as a script would, raw HTTP/1.1 on one kept-alive connection per sender (http.client): on loopback this
    process shares the server's two cores, which an attacker's machine would not, so it spends as little as it can
    (a join costs it about a tenth of an httpx request's CPU)."""
    rng, sent = random.Random(plan.seed + 7), []  # (HTTP status, seconds) per join
    stop_at = min(end, time.perf_counter() + plan.flood_seconds)
    script, url, local = Visitor(app, "203.0.113.66", "flood"), urlsplit(app.url), threading.local()
    image = script.upload("house256.png", IMAGE.read_bytes())[1] if plan.flood_fn == "run" else None
    headers, opened = {"content-type": "application/json", **script.headers}, []

    def join(body: dict) -> str:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            opened.append(conn)
        try:
            conn.request("POST", f"{url.path}gradio_api/queue/join", json.dumps(body, allow_nan=True), headers)
            answer = conn.getresponse()
            answer.read()
            local.conn = conn
            return str(answer.status)
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            local.conn = None
            return type(err).__name__

    def one(k: int) -> None:
        if time.perf_counter() > stop_at:
            sent.append(("not sent (time)", None))
            return
        if plan.flood_fn == "run":
            data = app.run_data(image, iterations=3000, max_side=plan.max_side, width=plan.width)
        else:
            data = app.replay_args(rng) if plan.flood_fn in ("replay", "play") else [""]  # page_load: no link
        body = {"data": data, "fn_index": app.fn[plan.flood_fn], "session_hash": f"flood{k}-{secrets.token_hex(4)}"}
        t0 = time.perf_counter()
        code = join(body | {"event_data": None, "trigger_id": None})
        sent.append((code, time.perf_counter() - t0))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(plan.flood_workers) as pool:
        list(pool.map(one, range(plan.flood_joins)))
    duration, latencies = time.perf_counter() - t0, [s for _, s in sent if s is not None]
    for conn in [*opened, script]:
        conn.close()
    out = {"fn": plan.flood_fn, "address": script.address, "joins": plan.flood_joins, "sent": len(latencies)}
    out["started"] = t0  # perf_counter: the system's monotonic clock, the class's too
    out.update(codes=dict(Counter(code for code, _ in sent)), duration_s=round(duration, 2))
    return out | {"join_p50_s": rounded(percentile(latencies, 50)), "join_p95_s": rounded(percentile(latencies, 95))}


def long_thin(app: App, plan: Plan, server: Server) -> dict:
    """Upload a ``thin`` (width × height) PNG and run it: refused with a line, or brought within max_side; the
    server's peak RSS around it (VmHWM reset before it, and the 0.1 s samples)."""
    me, (width, height) = Visitor(app, "192.0.2.202", "long-thin"), plan.thin
    max_side = dict(app.run_params).get("max_side") or plan.max_side
    before = server.rss.mark("long_thin")
    try:  # VmHWM back to the current RSS (Linux)
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    up, image = me.upload(f"thin_{width}x{height}.png", png_bytes(width, height))
    out = {"size": [width, height], "max_side": max_side, "upload_status": up.extra.get("status")}
    out["upload_s"] = rounded(up.seconds)
    if image is None:
        out.update(answer="upload refused", message=up.message)
    else:
        run = me.call("long_thin", "run", app.run_data(image, iterations=plan.thin_iterations), plan.thin_timeout_s)
        out["seconds"] = rounded(run.seconds)
        out.update(thin_answer(me, run, max_side))
    me.close()
    time.sleep(0.5)
    peak = max(server.rss.peaks.get("long_thin", 0.0), (rss_mb(server.pid, "VmHWM") or 0.0) if hwm_reset else 0.0)
    out["rss_mb"] = {"before": rounded(before, 1), "peak": rounded(peak, 1)}
    out["rss_delta_mb"] = rounded(peak - before, 1) if before else None
    out["peak_from"] = "VmHWM (reset before) and 0.1 s samples" if hwm_reset else "0.1 s samples"
    return out


def thin_answer(me: Visitor, run: Call, max_side: int) -> dict:
    """How the long-thin run was answered: refused (one line), an error, or the observation's size."""
    if not run.answered:
        return {"answer": "no answer", "message": run.message}
    if not run.ok and (run.message or "").startswith("HTTP "):  # the join itself was refused (a stopped queue)
        return {"answer": f"join answered {run.message.split(':')[0]}", "message": run.message}
    if not run.ok:
        one_line = bool(run.message) and "\n" not in run.message.strip() and "Traceback" not in run.message
        return {"answer": "refused" if one_line else "error", "message": run.message}
    urls = file_urls(run.output[0]) if run.output else []
    size = image_size(me.http.get(urls[0]).content) if urls else None
    answer = "ran (size unknown)" if not size else "within max_side" if max(size) <= max_side else "over max_side"
    return {"observation_size": list(size) if size else None, "answer": answer, "status": run.status(200)}


def direct_call(app: App) -> dict:
    """``POST /gradio_api/run/replay`` outside the queue: its HTTP status (refused: 4xx)."""
    body, headers = {"data": app.replay_args(random.Random(1))}, {"X-Forwarded-For": "192.0.2.204"}
    t0 = time.perf_counter()
    try:
        r = httpx.post(app.url + "gradio_api/run/replay", json=body, headers=headers, timeout=60)
        return {"status": r.status_code, "seconds": rounded(time.perf_counter() - t0), "answer": r.text[:160]}
    except httpx.HTTPError as err:
        return {"status": None, "answer": failure(err, 160)}


def warm_up(app: App, plan: Plan, calls: list) -> Call:
    """A first run (imports, conv path choice: not measured), then 5 replay scrubs on the quiet server."""
    warm = Visitor(app, "192.0.2.200", "warm")
    _, image = warm.upload("house256.png", IMAGE.read_bytes())
    run = warm.call("warm", "run", app.run_data(image, iterations=10, max_side=32, width=8), 120.0)
    rng = random.Random(plan.seed + 5)
    calls.extend(warm.call("replay_alone", "replay", app.replay_args(rng), 60.0) for _ in range(5))
    warm.close()
    return run


def ready() -> bool:
    """Nothing: the flood's process imports this module to run it (2-4 s of CPU, which the class must not share)."""
    return True


def the_class(app: App, plan: Plan, calls: list, end: float) -> tuple[list, dict]:
    """The students, the slow reader and (``flood_delay_s`` later) the flood, all at once: the finished live runs
    (visitor, Call) and the flood's report."""
    live_every = max(1, plan.students // max(1, plan.live))
    live_ids = [k * live_every for k in range(min(plan.live, plan.students))]
    roles = {i: "stop" if n == min(1, len(live_ids) - 1) else "run" for n, i in enumerate(live_ids)}
    image, runs, slow = IMAGE.read_bytes(), [], Visitor(app, "192.0.2.201", "slow-reader")
    # the script floods from a process of its own, as from a machine of its own: in this one its sixteen senders would
    # hold this process's GIL, and the students' own requests and streams would wait for them here, not at the server
    script = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    script.submit(ready).result(timeout=120)  # started, and this module (torch with it) imported, before the class
    with script, ThreadPoolExecutor(plan.students + 2) as pool:
        futures = [
            pool.submit(student, app, plan, i, calls, image, end, roles.get(i), runs) for i in range(plan.students)
        ]
        futures.append(pool.submit(live_run, app, plan, slow, calls, image, end, "slow", runs))
        time.sleep(plan.flood_delay_s)
        flooding = script.submit(flood, app, plan, end)  # perf_counter: the system's monotonic clock, as here
        wait([*futures, flooding], timeout=plan.deadline_s + 120)
        flooded = flooding.result(timeout=1) if flooding.done() else {"error": "did not end"}
    return runs, flooded


def lesson(app: App, plan: Plan, server: Server, calls: list, say: Callable[[str], None]) -> dict:
    """Warm up, the class, then what is left of the server after it: the report's part that is not per event."""
    warm_run = warm_up(app, plan, calls)
    say(f"warm-up run: {warm_run.ok} {warm_run.message or ''}")
    direct = direct_call(app)
    say(f"direct POST /gradio_api/run/replay: {direct.get('status')}")
    rss_class, t_class = server.rss.mark("class"), time.perf_counter()
    runs, flooded = the_class(app, plan, calls, t_class + plan.deadline_s)
    class_s = time.perf_counter() - t_class
    say(f"class over in {class_s:.1f} s; flood: {flooded.get('codes')}")
    server.rss.mark("after")
    after = [me.downloads(run) for me, run in runs if run.answered and run.ok]  # once more, after the flood
    end = Visitor(app, "192.0.2.203", "end")
    end_replay = end.call("end_replay", "replay", app.replay_args(random.Random(3)), 60.0)
    say(f"a fresh replay after the class: {end_replay.ok} in {end_replay.seconds:.1f} s")
    for me in [end, *(me for me, _ in runs)]:
        me.close()
    thin = long_thin(app, plan, server)
    say(f"long-thin {plan.thin}: {thin.get('answer')} ({thin.get('message') or thin.get('observation_size')})")
    alive, hwm, rss_end = server.proc.poll() is None, rss_mb(server.pid, "VmHWM"), server.rss.sample()
    out = dict(long_thin=thin, flood=flooded, direct_run_replay=direct, downloads_after_flood=tally(after))
    out.update(queue_serves_at_end=end_replay.answered and end_replay.ok)
    out["end_replay"] = dict(
        answered=end_replay.answered, seconds=rounded(end_replay.seconds), message=end_replay.message
    )
    out["server_alive_at_end"] = alive
    # after_warm_up: read when the server came up, before the warm-up run
    rss = dict(after_warm_up=server.at_start, class_start=rss_class, class_peak=server.rss.peaks.get("class"))
    rss.update(peak=server.rss.peak(), end=rss_end, vm_hwm_since_long_thin=hwm)
    out["server_rss_mb"] = {k: rounded(v, 1) for k, v in rss.items()}
    out["warm_up"] = dict(ok=warm_run.ok, seconds=rounded(warm_run.seconds), message=warm_run.message)
    out["flood"]["at_s"] = rounded(flooded.pop("started") - t_class, 2) if "started" in flooded else None
    return out | {"class_s": round(class_s, 1), "class_started": t_class}


def classroom_test(plan: Plan = Plan(), app_root: Path = ROOT, say: Callable[[str], None] = lambda s: None) -> dict:
    """Serve the app of ``app_root`` in a subprocess and play the class; the report (``verdict`` reads it)."""
    started, facts, calls = time.perf_counter(), machine(), []
    server = Server(app_root)
    say(f"server up at {server.url} in {time.perf_counter() - started:.1f} s")
    try:
        after = lesson(App.read(server.url), plan, server, calls, say)
    finally:
        server_log = log_summary(server.tail(200_000))
        server.stop()
    report = summarise(calls, plan, after.pop("class_started")) | after
    report |= {"wall_s": round(time.perf_counter() - started, 1), "machine": facts}
    report |= {"app": git_state(Path(app_root)) | {"root": str(app_root)}, "server_log": server_log}
    report["fails"] = verdict(report)
    return report


def log_summary(text: str) -> dict:
    """The server log's tracebacks (how many, the first one's last lines) and its last lines."""
    blocks = text.split("Traceback (most recent call last):")[1:]
    first = blocks[0].strip().splitlines()[-12:] if blocks else []
    return {"tracebacks": len(blocks), "first_traceback_end": first, "tail": text.strip().splitlines()[-8:]}


def summarise(calls: list[Call], plan: Plan, since: float = 0.0) -> dict:
    """Answers and p50 / p95 latency per kind of event, honest events lost, live frames' gaps, Stop's delay (each
    event's row: when it was sent, from ``since``, the class's start)."""
    by_kind: dict[str, list[Call]] = {}
    for c in calls:
        by_kind.setdefault(c.kind, []).append(c)
    events = {}
    for kind, cs in sorted(by_kind.items()):
        ok_stats = stats([c.seconds for c in cs if c.ok and c.seconds is not None])
        events[kind] = {
            "count": len(cs),
            "ok": sum(c.ok for c in cs),
            "refused_or_failed": sum(c.answered and not c.ok for c in cs),
            "lost": sum(not c.answered for c in cs),
            **stats([c.seconds for c in cs if c.answered and c.seconds is not None]),
            **{f"ok_{k}": v for k, v in ok_stats.items()},
            "messages": sorted({c.message for c in cs if c.message})[:8],
        }
    plays, lives = by_kind.get("play", []), by_kind.get("live_run", [])
    events["play_first_frame"] = {"count": len(plays), **stats([c.frames[0] for c in plays if c.frames])}
    events["play_first_frame"]["frames_per_play"] = sorted({len(c.frames) for c in plays})
    events["play_first_frame"]["largest_gap_s"] = largest_gap(*(c.frames for c in plays))
    events["live_start"] = {"count": len(lives), **stats([c.start_s for c in lives if c.start_s is not None])}
    events["live_first_frame"] = {"count": len(lives), **stats([c.frames[0] for c in lives if c.frames])}
    stops = [c for c in lives if c.extra.get("stopper")]
    delays = [c.extra["stop_delay_s"] for c in stops if c.extra.get("stop_delay_s") is not None]
    events["stop"] = {"count": len(stops), "pressed": sum("stop_sent_s" in c.extra for c in stops), **stats(delays)}
    honest, runs = [c for c in calls if c.kind in HONEST], [c for c in calls if c.kind in ("live_run", "slow_reader")]
    out = dict(mode="classroom", plan=asdict(plan), events=events, honest_events=len(honest))
    out.update(honest_lost=sum(not c.answered for c in honest))
    out.update(honest_refused_or_failed=sum(c.answered and not c.ok for c in honest))
    out.update(harness_errors=[c.message for c in calls if c.kind == "harness_error"])
    out.update(live_runs=[c.summary() for c in runs])  # largest gap: the students' (the slow reader's are pauses)
    out.update(live_largest_frame_gap_s=largest_gap(*(c.frames for c in lives)))
    out.update(
        stop_delay_s=rounded(max(delays)) if delays else None, latencies_over=OVER, calls=[c.row(since) for c in calls]
    )
    return out | {"downloads": tally([c.extra.get("downloads") for c in runs if c.answered and c.ok])}


def verdict(r: dict) -> list[str]:
    """The issue's done-when criteria that failed (empty: the class was served)."""
    lost = {k: e["lost"] for k, e in r["events"].items() if e.get("lost")}
    replay, thin, stop = r["events"].get("replay", {}), r.get("long_thin", {}), r.get("stop_delay_s")
    p95, bad = replay.get("ok_p95_s", replay.get("p95_s")), replay.get("refused_or_failed")
    d, after = r.get("downloads", {}), r.get("downloads_after_flood", {})
    unserved = d.get("ok") != d.get("runs") or after.get("ok") != after.get("runs")
    image, answer, grew = f"the {thin.get('size')} image", thin.get("answer"), thin.get("rss_delta_mb")
    status = (r.get("direct_run_replay") or {}).get("status")
    refused, end = status is not None and 400 <= status < 500, (r.get("end_replay") or {}).get("message")
    checks = [
        (r["honest_lost"], f"{r['honest_lost']} honest events lost (never completed): {lost}"),
        (r.get("harness_errors"), f"visitors that could not go on: {r.get('harness_errors', [])[:3]}"),
        (p95 is None or p95 > REPLAY_P95_S, f"replay scrubs answered in {p95} s at p95 (bound {REPLAY_P95_S} s)"),
        (bad, f"{bad} replay scrubs refused or failed: {replay.get('messages', [])[:2]}"),
        (stop is None or stop > STOP_S, f"Stop took {stop} s to end the run (bound {STOP_S} s)"),
        (unserved, f"downloads not served: {d.get('codes')}, after the flood {after.get('codes')}"),
        (answer not in ("refused", "within max_side", "upload refused"), f"{image}: {answer} ({thin.get('message')})"),
        (grew is None or grew > THIN_MB, f"{image} took the server {grew} MB more (bound {THIN_MB})"),
        (not refused, f"a direct POST /gradio_api/run/replay answered HTTP {status} (should be refused, 4xx)"),
        (not r.get("queue_serves_at_end"), f"the queue no longer serves a fresh replay: {end}"),
    ]
    return [message for failed, message in checks if failed]


def pq(r: dict, kind: str) -> str:
    e = r["events"].get(kind) or {}
    return f"{e.get('p50_s')} / {e.get('p95_s')}"


def slow(r: dict) -> str:
    x = next((x for x in r["live_runs"] if x["kind"] == "slow_reader"), None)
    if x is None:
        return "not run"
    return f"{'yes' if x['answered'] else 'no'}, {'yes' if (x.get('downloads') or {}).get('ok') else 'no'}"


def thin(r: dict) -> str:
    t = r["long_thin"]
    return f"{t.get('answer')}: {t.get('message') or t.get('observation_size')}"


def served(r: dict) -> str:
    return "{ok}/{runs} ".format(**r["downloads"]) + "({ok}/{runs})".format(**r["downloads_after_flood"])


#: The README's rows: label, and what a report shows there.
ROWS = [
    ("students (live runs), one address", lambda r: "{students} ({live}), {one_address}".format(**r["plan"])),
    ("honest events lost / sent", lambda r: f"{r['honest_lost']} / {r['honest_events']}"),
    ("page p50 / p95 (s)", lambda r: pq(r, "page")),
    ("page-load event p50 / p95 (s)", lambda r: pq(r, "page_load")),
    ("replay scrub p50 / p95 (s)", lambda r: pq(r, "replay")),
    ("replay scrub, server otherwise idle, p50 / p95 (s)", lambda r: pq(r, "replay_alone")),
    ("Play first frame p50 / p95 (s)", lambda r: pq(r, "play_first_frame")),
    ("whole Play p50 / p95 (s)", lambda r: pq(r, "play")),
    ("Next lesson p50 / p95 (s)", lambda r: pq(r, "next_lesson")),
    ("upload p50 / p95 (s)", lambda r: pq(r, "upload")),
    ("live run start p50 / p95 (s)", lambda r: pq(r, "live_start")),
    ("live first frame p50 / p95 (s)", lambda r: pq(r, "live_first_frame")),
    ("live frames' largest gap (s)", lambda r: r["live_largest_frame_gap_s"]),
    ("Stop's delay (s)", lambda r: r["stop_delay_s"]),
    ("slow reader: final message, downloads", slow),
    ("downloads served (after the flood)", served),
    ("long-thin image: answer", thin),
    (
        "long-thin image: server memory (MB more)",
        lambda r: "see below" if r["long_thin"].get("note") else r["long_thin"].get("rss_delta_mb"),
    ),
    ("honest events answered with a refusal or an error", lambda r: r["honest_refused_or_failed"]),
    (
        "flood: joins, answers, seconds",
        lambda r: ", ".join(str(r["flood"].get(k)) for k in ("sent", "codes", "duration_s")),
    ),
    ("direct POST /gradio_api/run/replay", lambda r: f"HTTP {r['direct_run_replay'].get('status')}"),
    ("queue serves at the end", lambda r: r["queue_serves_at_end"]),
    (
        "server RSS: class start → peak → end (MB)",
        lambda r: "{class_start} → {peak} → {end}".format(**r["server_rss_mb"]),
    ),
    ("criteria failed", lambda r: len(r["fails"])),
    ("wall (s)", lambda r: r["wall_s"]),
]


def cell(get: Callable[[dict], object], r: dict) -> str:
    """One table cell (– where the report lacks what the row reads)."""
    try:
        return str(get(r)).replace("|", "/")
    except (KeyError, TypeError, ValueError):
        return "–"


def readme(folder: Path = REPORTS) -> str:
    """The folder's README: one column per classroom report in it, and each report's failed criteria."""
    files = sorted(folder.glob("classroom*.json"), key=lambda p: ("before" not in p.stem, p.stem))
    reports = {p.stem: json.loads(p.read_text()) for p in files}
    lines = [
        "# Public Space under load",
        "",
        "- `crowd.json`: `python -m benchmarks load --crowd --json` (a greedy visitor, replay viewers, honest runs).",
        "- `abandoned.json`: `python -m benchmarks load --abandoned 10 --json` (runs joined and never read).",
        "- `classroom*.json`: the classroom test of issue 32 (item 8), `benchmarks/classroom.py`: 40 students "
        "(page, page-load event, replay scrubs, Play, Next lesson; 8 press Run, one of them Stop), a script joining "
        "2,100 fresh session hashes from one address, a 20000×16 upload, a visitor reading its run slowly and a "
        "direct POST outside the queue. The server runs in its own process; its RSS is sampled from /proc. "
        "Latencies are over answered events (a refusal or an HTTP 503 is an answer, counted below); the JSON also "
        "has them over successful events only (ok_*), and every event's times (calls).",
        "",
    ]
    if not reports:
        return "\n".join(lines)
    lines += ["| | " + " | ".join(f"`{n}`" for n in reports) + " |", "|---" * (len(reports) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(get, r) for r in reports.values()) + " |" for label, get in ROWS]
    for n, r in reports.items():
        changed = r["app"].get("changed_files")
        lines += [
            "",
            f"**`{n}`**: `{r.get('command')}`, app {r['app'].get('commit')}"
            + (f" with {len(changed)} files changed" if changed else "")
            + f", {r['machine']['cpu']} ({r['machine']['cores']} cores), {r.get('date')}.",
        ]
        lines += [f"{r[key]}.".replace("..", ".") for key in ("note", "diagnosis") if r.get(key)]
        lines += [f"The long-thin image: {r['long_thin']['note']}."] if r["long_thin"].get("note") else []
        lines += ["Failed criteria:" if r["fails"] else "Every criterion held.", *[f"- {f}" for f in r["fails"]]]
    return "\n".join(lines) + "\n"


def write(r: dict, out: Path | None, name: str) -> None:
    """The report as ``out`` (default: reports/public_space/NAME.json), and that folder's README rebuilt."""
    out = out or REPORTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    if out.parent.resolve() == REPORTS.resolve():
        (REPORTS / "README.md").write_text(readme(REPORTS))
    print(f"wrote {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Play the class ``argv`` describes, write its report; 0 when every criterion held."""
    p = parser("load --classroom", __doc__, json=False)
    p.add_argument("--small", action="store_true", help="6 students, 1 live run, a 300-join flood (under a minute)")
    p.add_argument("--one-address", action="store_true", help="the whole class behind one address (a school's NAT)")
    p.add_argument("--app-root", type=Path, default=ROOT, help="serve the app of this tree (default: this one)")
    p.add_argument("--students", type=int, default=None)
    p.add_argument("--live", type=int, default=None, help="students who press Run")
    p.add_argument("--flood-joins", type=int, default=None)
    p.add_argument("--flood-fn", choices=("replay", "page_load", "run", "play"), default=None)
    out_help = "the JSON report (default: reports/public_space/classroom[_small][_one_address].json); '-' writes none"
    p.add_argument("--out", type=Path, default=None, help=out_help)
    p.add_argument("--note", default="", help="a line kept in the report (e.g. what else ran on the machine)")
    args = p.parse_args(argv)
    changes = dict(students=args.students, live=args.live, flood_joins=args.flood_joins, flood_fn=args.flood_fn)
    given = {k: v for k, v in changes.items() if v is not None}
    plan = replace(SMALL if args.small else Plan(), one_address=args.one_address, **given)
    r = classroom_test(plan, args.app_root.resolve(), say=lambda s: print(s, file=sys.stderr, flush=True))
    words = list(argv if argv is not None else sys.argv[1:])
    if "--note" in words:  # the note is kept on its own
        del words[words.index("--note") : words.index("--note") + 2]
    command = "python -m benchmarks load --classroom " + " ".join(words)
    r = {"command": command.strip(), "date": _dt.datetime.now().isoformat(timespec="seconds"), "note": args.note, **r}
    if str(args.out) != "-":
        write(
            r, args.out, "classroom" + ("_small" if args.small else "") + ("_one_address" if args.one_address else "")
        )
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
    else:
        keep = ("honest_lost", "honest_events", "stop_delay_s", "live_largest_frame_gap_s", "queue_serves_at_end")
        print("\n".join(f"{k}: {r[k]}" for k in keep))
        print("fails:" + "".join(f"\n  - {f}" for f in r["fails"]) if r["fails"] else "fails: none")
    return 0 if not r["fails"] else 1
