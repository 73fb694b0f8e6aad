"""The classroom test (issue 32, item 8): a class of 40 students on the public Space at once, and what may hurt it.

    python -m benchmarks load --classroom [--small] [--one-address] [--app-root DIR] [--out FILE] [--json]

The app runs in a subprocess (``app.make_app`` on 127.0.0.1 with one trusted proxy hop, as on a Space), so its memory
is its own: a thread reads the server's RSS from /proc every 0.1 s. Every visitor speaks Gradio's HTTP protocol as the
page does (``/gradio_api/queue/join``, then the ``/gradio_api/queue/data`` event stream), each with its own session
hash and X-Forwarded-For address (``--one-address``: the whole class behind one school NAT). Nothing leaves the
machine, and every loop is bounded in count and in time (the class ends by ``Plan.deadline_s``).

Before the class, on the otherwise idle server: a warm-up run, five replay scrubs to compare with, and
``POST /gradio_api/run/replay`` sent outside the queue. In the class, a student opens the page (GET / and /config),
joins the page-load event, scrubs ``scrubs`` replays, presses Play (all its frames) and Next lesson; ``live`` of them
then upload an image and press Run (a few hundred steps at 32 px), and one of those presses Stop after a few frames.
Meanwhile one address joins ``flood_joins`` events, each with a fresh session hash, never reading them, and one
visitor reads its live run with pauses of several seconds between messages. After the class: are the downloads of
every finished live run still served, and does a fresh replay still answer? Last (a run that never ended would hold
the live queue's one slot), a 20000×16 PNG is uploaded and run, the server's peak RSS read around it.

``verdict`` lists the criteria of the issue's done-when that failed (empty: all held).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx
from PIL import Image

from .options import parser

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports" / "public_space"
IMAGE = ROOT / "assets" / "house256.png"
#: Events a student (or the slow reader) waits for; one that never completes is an honest event lost.
HONEST = ("page", "page_load", "replay", "play", "next_lesson", "upload", "live_run", "slow_reader")
#: The issue's bounds (done-when): replays and Stop within 1 s at p95, the long-thin image within 300 MB more memory.
REPLAY_P95_S, STOP_S, THIN_MB = 1.0, 1.0, 300.0


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


SMALL = Plan(
    students=6,
    live=1,
    scrubs=2,
    live_iterations=150,
    stop_iterations=1000,
    flood_joins=300,
    flood_workers=8,
    flood_seconds=20.0,
    flood_delay_s=1.0,
    slow_pause_s=2.0,
    slow_iterations=60,
    thin_timeout_s=20.0,
    stagger_s=1.0,
    deadline_s=90.0,  # a served class ends in about 25 s: the rest is room for a slow machine
)


# ---------------------------------------------------------------------------------------------------- small helpers


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (None for no values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))] if values else None


def rounded(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def stats(values: list[float]) -> dict:
    """p50, p95 and max (rounded) and how many."""
    p50, p95, top = percentile(values, 50), percentile(values, 95), max(values, default=None)
    return {"p50_s": rounded(p50), "p95_s": rounded(p95), "max_s": rounded(top), "n": len(values)}


def largest_gap(*series: list[float]) -> float | None:
    """The most seconds between consecutive times of any series (rounded; None for no two)."""
    return rounded(max((b - a for times in series for a, b in zip(times, times[1:])), default=None))


def failure(err: Exception, n: int = 300) -> str:
    return f"{type(err).__name__}: {err}"[:n]


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


def file_urls(value: object) -> list[str]:
    """Every ``url`` of a Gradio FileData inside an output value (lists and updates searched)."""
    if isinstance(value, dict) and value.get("url") and (value.get("meta") or {}).get("_type") == "gradio.FileData":
        return [value["url"]]
    values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [u for v in values for u in file_urls(v)]


MSG, EVENT = re.compile(r'"msg"\s*:\s*"(\w+)"'), re.compile(r'"event_id"\s*:\s*"(\w+)"')


def sse_kind(line: str) -> tuple[str | None, str | None]:
    """(msg, event_id) of one ``data:`` line of the event stream, read from its head (no JSON parsing)."""
    msg, event = MSG.search(line[:160]), EVENT.search(line[:160])
    return (msg.group(1) if msg else None), (event.group(1) if event else None)


def tally(downloads: list[dict | None]) -> dict:
    """Runs whose downloads were fetched, those all served, and the HTTP codes of their files."""
    codes = sum((Counter((d or {}).get("codes", {})) for d in downloads), Counter())
    return {"runs": len(downloads), "ok": sum(bool(d and d["ok"]) for d in downloads), "codes": dict(codes)}


def machine() -> dict:
    """The CPU model and cores of this machine, and its load when the run started."""
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    cpu, cores, usable = model.group(1).strip() if model else "unknown", os.cpu_count(), len(os.sched_getaffinity(0))
    return {
        "cpu": cpu,
        "cores": cores,
        "usable_cores": usable,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_state(root: Path) -> dict:
    """The app tree's commit and its files changed since (the working tree may be someone's work in progress)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line]
    return {"commit": git("rev-parse", "HEAD").strip()[:12] or None, "changed_files": changed}


def rss_mb(pid: int, field_name: str = "VmRSS") -> float | None:
    """A process's resident set (VmRSS) or its peak (VmHWM) in MB, from /proc (None when unreadable)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return next((int(ln.split()[1]) / 1024 for ln in lines if ln.startswith(field_name + ":")), None)
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------------------------------- the server

SERVER = """
import sys, time
from app import make_app
from demo.ui import launch_options
demo = make_app()
demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True,
            **launch_options())
print("SERVING", flush=True)
time.sleep(10**9)
"""


class Server:
    """The app of ``root`` served by a subprocess on a free loopback port, with a temp folder of its own, and a
    thread reading its RSS every 0.1 s: the peak per phase in ``peaks`` (``mark`` starts a phase)."""

    def __init__(self, root: Path, start_timeout: float = 120.0) -> None:
        self.temp = tempfile.TemporaryDirectory(prefix="classroom-", ignore_cleanup_errors=True)
        self.log = Path(self.temp.name) / "server.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(root), "SPECTRAL_BIAS_LAB_PROXY_HOPS": "1"}
        env.update(GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(Path(self.temp.name) / "gradio"))
        env.pop("SPACE_ID", None)
        with open(self.log, "w") as log:
            command = [sys.executable, "-c", SERVER, str(port)]
            self.proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url, self.pid, self.phase, self.peaks = f"http://127.0.0.1:{port}/", self.proc.pid, "start", {}
        self.done, self.thread = threading.Event(), threading.Thread(target=self.watch, daemon=True)
        deadline = time.monotonic() + start_timeout
        while "SERVING" not in self.tail(None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                error = f"the server did not start in {start_timeout:.0f} s (exit {self.proc.poll()}): {self.tail()}"
                self.stop()
                raise RuntimeError(error)
            time.sleep(0.25)
        self.at_start = self.sample()
        self.thread.start()

    def sample(self) -> float | None:
        """The server's RSS now (MB), kept in the current phase's peak."""
        rss = rss_mb(self.pid)
        if rss is not None:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
        return rss

    def watch(self) -> None:
        while not self.done.wait(0.1):
            self.sample()

    def mark(self, phase: str) -> float | None:
        """Start ``phase``; the RSS at its start."""
        self.phase = phase
        return self.sample()

    def tail(self, n: int | None = 1500) -> str:
        """The last ``n`` characters of the server's output (None: all of it)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-n:] if n else text

    def stop(self) -> None:
        """Stop the sampler and the server, and remove its temp folder."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(5)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.temp.cleanup()


# ---------------------------------------------------------------------------------------------------- the app's API


@dataclass
class App:
    """What a visitor reads from the server: the functions' indexes, the run's parameters, the replay choices."""

    url: str
    fn: dict[str, int]
    run_params: list[tuple[str, object]]
    files_index: int
    experiments: list[str]
    lanes: list[str]
    iterations: tuple[int, int, int]

    @classmethod
    def read(cls, url: str) -> App:
        """The page's config and the run endpoint's parameters."""
        config = httpx.get(url + "config", timeout=60).json()
        props = {c["id"]: c.get("props", {}) for c in config["components"]}
        by_elem = {p.get("elem_id"): i for i, p in props.items()}

        def event(api_name: str, button: str | None = None) -> dict:
            """The event named ``api_name``, else the one ``button`` (an elem_id) triggers."""
            deps = config["dependencies"]
            named = [d for d in deps if d.get("api_name") == api_name]
            named += [d for d in deps if button and any(t[0] == by_elem.get(button) for t in d["targets"])]
            if not named:
                raise KeyError(f"no event {api_name!r} in the app's config")
            return named[0]

        def choices(elem_id: str) -> list[str]:
            values = [c[1] if isinstance(c, list) else c for c in props[by_elem[elem_id]]["choices"]]
            return [v for v in values if v]

        buttons = {"stop": "stop", "play": "replay_play", "next_lesson": "replay_next"}
        deps = {k: event(k, buttons.get(k)) for k in ("run", "stop", "replay", "play", "next_lesson", "default_image")}
        info = httpx.get(url + "gradio_api/info", timeout=60).json()["named_endpoints"]["/run"]["parameters"]
        slider = props[by_elem["replay_iteration"]]
        return cls(
            url=url,
            fn={name: d["id"] for name, d in deps.items()},
            run_params=[(p["parameter_name"], p.get("parameter_default")) for p in info],
            files_index=[props[c].get("elem_id") for c in deps["run"]["outputs"]].index("downloads"),
            experiments=choices("replay_experiment"),
            lanes=choices("replay_lane"),
            iterations=(int(slider["minimum"]), int(slider["maximum"]), int(slider.get("step") or 1)),
        )

    def run_data(self, image: dict | None, **values: object) -> list:
        """The run endpoint's inputs in order, the app's defaults where not given."""
        known = dict(self.run_params)
        if set(values) - set(known):
            raise KeyError(f"the run endpoint has no parameter {sorted(set(values) - set(known))}")
        known.update(image=image, **values)
        return [known[name] for name, _ in self.run_params]

    def replay_args(self, rng: random.Random) -> list:
        lo, hi, step = self.iterations
        lane = rng.choice(self.lanes)
        other = rng.choice(["vanilla", ""]) if lane != "vanilla" else ""
        return [rng.choice(self.experiments), lane, other, rng.randrange(lo, hi + 1, step)]


@dataclass
class Call:
    """One event as its visitor saw it: answered (a final message), ok (success), times from ``t0`` (seconds)."""

    kind: str
    who: str
    answered: bool = False
    ok: bool = False
    message: str | None = None
    seconds: float | None = None
    start_s: float | None = None  # process_starts
    frames: list[float] = field(default_factory=list)  # process_generating times
    output: list | None = None
    extra: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter, repr=False)

    def done(self) -> Call:
        """The Call, its ``seconds`` set (now) if not yet."""
        self.seconds = time.perf_counter() - self.t0 if self.seconds is None else self.seconds
        return self

    def summary(self) -> dict:
        out = {"kind": self.kind, "who": self.who, "answered": self.answered, "ok": self.ok}
        out.update(seconds=rounded(self.seconds), message=self.message)
        if self.frames:
            out.update(frames=len(self.frames), first_frame_s=rounded(self.frames[0]))
            out["largest_gap_s"] = largest_gap(self.frames)
        if self.start_s is not None:
            out["start_s"] = rounded(self.start_s)
        return {**out, **self.extra}

    def row(self) -> list:
        """The report's line for every event: kind, visitor, answered, ok, seconds, started, first frame, frames."""
        times = (self.seconds, self.start_s, min(self.frames, default=None))
        return [self.kind, self.who, self.answered, self.ok, *map(rounded, times), len(self.frames)]

    def status(self, n: int) -> str | None:
        """The run's status line (its 7th output), cut to ``n`` characters."""
        return str(self.output[6])[:n] if self.output and len(self.output) > 6 else None


class Visitor:
    """One browser tab (a session hash) from one address, speaking Gradio's queue protocol."""

    def __init__(self, app: App, who: str, address: str, **client: object) -> None:
        self.app, self.who, self.address, self.session = app, who, address, f"{who}-{secrets.token_hex(4)}"
        headers = {"X-Forwarded-For": address}
        self.http = httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), headers=headers, **client)

    def page(self) -> Call:
        call = Call("page", self.who)
        try:
            codes = [self.http.get(self.app.url + p).status_code for p in ("", "config")]
            call.answered, call.ok = True, codes == [200, 200]
            call.message = None if call.ok else f"HTTP {codes}"
        except httpx.HTTPError as err:
            call.message = failure(err, 200)
        return call.done()

    def upload(self, name: str, data: bytes) -> tuple[Call, dict | None]:
        """Upload a file: the Call, and the FileData to pass to a run (None when refused)."""
        call, path = Call("upload", self.who), None
        try:
            r = self.http.post(self.app.url + "gradio_api/upload", files={"files": (name, data)})
            call.answered, call.ok, call.extra["status"] = True, r.status_code == 200, r.status_code
            path = r.json()[0] if call.ok else None
            call.message = None if call.ok else r.text[:200]
        except (httpx.HTTPError, ValueError, IndexError) as err:
            call.message = failure(err, 200)
        return call.done(), ({"path": path, "meta": {"_type": "gradio.FileData"}} if path else None)

    def join(self, fn: int, data: list, session: str | None = None) -> tuple[int, str]:
        body = {"data": data, "fn_index": fn, "session_hash": session or self.session, "event_data": None}
        r = self.http.post(self.app.url + "gradio_api/queue/join", json=body)
        return r.status_code, r.text

    def stop(self) -> int:
        """Press Stop (the app serves it outside the queue): the HTTP status."""
        body = {"data": [], "fn_index": self.app.fn["stop"], "session_hash": self.session}
        return self.http.post(self.app.url + "gradio_api/run/predict", json=body).status_code

    def call(self, kind: str, fn_name: str, data: list, timeout: float, on_message: Callable | None = None) -> Call:
        """Join ``fn_name`` with ``data`` and read the session's event stream until the event's final message, or
        ``timeout`` seconds (``on_message(call, msg)`` sees every other message)."""
        call = Call(kind, self.who)
        try:
            code, text = self.join(self.app.fn[fn_name], data)
            if code != 200:
                call.answered, call.message = True, f"HTTP {code}: {text[:160]}"
                return call.done()
            mine = json.loads(text).get("event_id")
            for msg, line in self.stream(call.t0 + timeout, mine):
                if msg == "process_starts":
                    call.start_s = time.perf_counter() - call.t0
                elif msg == "process_generating":
                    call.frames.append(time.perf_counter() - call.t0)
                elif msg == "process_completed":
                    call.done()
                    final = json.loads(line[5:])
                    call.answered, call.ok = True, bool(final.get("success"))
                    output = final.get("output") or {}
                    call.output = output.get("data")
                    call.message = None if call.ok else str(output.get("error"))[:300]
                    break
                elif msg in ("unexpected_error", "http_error"):
                    call.message = line[:300]
                if on_message is not None:
                    on_message(call, msg)
            if not call.answered and call.message is None:
                call.message = f"no final message within {timeout:.0f} s"
        except (httpx.HTTPError, ValueError) as err:
            call.message = failure(err)
        return call.done()

    def stream(self, deadline: float, event_id: str | None) -> Iterator[tuple[str | None, str]]:
        """(msg, line) of the session's event stream (another event's skipped) until it closes or ``deadline``."""
        # heartbeats come every 15 s: a read that waits past the deadline ends the stream
        timeout = httpx.Timeout(30.0, connect=10.0, read=max(1.0, min(30.0, deadline - time.perf_counter())))
        url, params = self.app.url + "gradio_api/queue/data", {"session_hash": self.session}
        with self.http.stream("GET", url, params=params, timeout=timeout) as r:
            if r.status_code != 200:
                yield "http_error", f"HTTP {r.status_code}"
                return
            for line in r.iter_lines():
                if line.startswith("data:"):
                    msg, event = sse_kind(line)
                    if event is None or not event_id or event == event_id:
                        yield msg, line
                    if msg == "close_stream":
                        return
                if time.perf_counter() > deadline:
                    return

    def downloads(self, call: Call) -> dict:
        """GET every file of a finished run's downloads: their HTTP status codes."""
        urls, codes = file_urls(call.output[self.app.files_index]) if call.output else [], Counter()
        for u in urls:
            try:
                codes[str(self.http.get(u).status_code)] += 1
            except httpx.HTTPError as err:
                codes[type(err).__name__] += 1
        return {"files": len(urls), "codes": dict(codes), "ok": bool(urls) and set(codes) == {"200"}}


# ---------------------------------------------------------------------------------------------------- the visitors
# Each visitor appends its Calls to one shared list (list.append is atomic) and its finished runs to ``runs``.


def student(app: App, plan: Plan, i: int, calls: list, image: bytes, end: float, role: str | None, runs: list) -> None:
    """One student's lesson: page, page-load event, scrubs, Play, Next lesson, and (``role``) Run and maybe Stop."""
    rng = random.Random(plan.seed * 1000 + i)
    me = Visitor(app, f"student{i:02d}", "192.0.2.10" if plan.one_address else f"198.51.100.{i + 1}")
    try:
        time.sleep(rng.uniform(0, plan.stagger_s))
        for kind in ["page", "page_load", *["replay"] * plan.scrubs, "play", "next_lesson"]:
            left = max(1.0, end - time.perf_counter())
            if time.perf_counter() > end:
                calls.append(Call(kind, me.who, message="not sent: the class's time was up"))
            elif kind == "page":
                calls.append(me.page())
            elif kind == "page_load":
                calls.append(me.call(kind, "default_image", [], min(60.0, left)))
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
        me.http.close()
    elif time.perf_counter() > end:
        calls.extend(Call(k, me.who, message="not sent: the class's time was up") for k in ("upload", "live_run"))
    else:
        live_run(app, plan, me, calls, image, end, role, runs)


def live_run(app: App, plan: Plan, me: Visitor, calls: list, image: bytes, end: float, role: str, runs: list) -> None:
    """Upload an image and press Run; ``role``: "run", "stop" (press Stop after ``stop_after_frames`` frames) or
    "slow" (the slow reader: ``slow_pause_s`` between the messages it reads)."""
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
    """``flood_joins`` queue joins from one address, each with a fresh session hash, none read; bounded by ``end``."""
    rng, sent = random.Random(plan.seed + 7), []  # (HTTP status, seconds) per join
    stop_at = min(end, time.perf_counter() + plan.flood_seconds)
    limits = httpx.Limits(max_connections=plan.flood_workers, max_keepalive_connections=plan.flood_workers)
    script = Visitor(app, "flood", "203.0.113.66", limits=limits)
    image = script.upload("house256.png", IMAGE.read_bytes())[1] if plan.flood_fn == "run" else None

    def one(k: int) -> None:
        if time.perf_counter() > stop_at:
            sent.append(("not sent (time)", None))
            return
        if plan.flood_fn == "run":
            data = app.run_data(image, iterations=3000, max_side=plan.max_side, width=plan.width)
        else:
            data = app.replay_args(rng) if plan.flood_fn in ("replay", "play") else []
        t0 = time.perf_counter()
        try:
            code = str(script.join(app.fn[plan.flood_fn], data, session=f"flood{k}-{secrets.token_hex(4)}")[0])
        except httpx.HTTPError as err:
            code = type(err).__name__
        sent.append((code, time.perf_counter() - t0))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(plan.flood_workers) as pool:
        list(pool.map(one, range(plan.flood_joins)))
    duration, latencies = time.perf_counter() - t0, [s for _, s in sent if s is not None]
    script.http.close()
    out = {"fn": plan.flood_fn, "address": script.address, "joins": plan.flood_joins, "sent": len(latencies)}
    out.update(codes=dict(Counter(code for code, _ in sent)), duration_s=round(duration, 2))
    return out | {"join_p50_s": rounded(percentile(latencies, 50)), "join_p95_s": rounded(percentile(latencies, 95))}


def long_thin(app: App, plan: Plan, server: Server) -> dict:
    """Upload a ``thin`` (width × height) PNG and run it: refused with a line, or brought within max_side; the
    server's peak RSS around it (VmHWM reset before it, and the 0.1 s samples)."""
    me, (width, height) = Visitor(app, "long-thin", "192.0.2.202"), plan.thin
    max_side = dict(app.run_params).get("max_side") or plan.max_side
    before = server.mark("long_thin")
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
    me.http.close()
    time.sleep(0.5)
    peak = max(server.peaks.get("long_thin", 0.0), (rss_mb(server.pid, "VmHWM") or 0.0) if hwm_reset else 0.0)
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


# ---------------------------------------------------------------------------------------------------- the class


def warm_up(app: App, plan: Plan, calls: list) -> Call:
    """A first run (imports, conv path choice: not measured), then 5 replay scrubs on the quiet server."""
    warm = Visitor(app, "warm", "192.0.2.200")
    _, image = warm.upload("house256.png", IMAGE.read_bytes())
    run = warm.call("warm", "run", app.run_data(image, iterations=10, max_side=32, width=8), 120.0)
    rng = random.Random(plan.seed + 5)
    calls.extend(warm.call("replay_alone", "replay", app.replay_args(rng), 60.0) for _ in range(5))
    warm.http.close()
    return run


def the_class(app: App, plan: Plan, calls: list, end: float) -> tuple[list, dict]:
    """The students, the slow reader and (``flood_delay_s`` later) the flood, all at once: the finished live runs
    (visitor, Call) and the flood's report."""
    live_every = max(1, plan.students // max(1, plan.live))
    live_ids = [k * live_every for k in range(min(plan.live, plan.students))]
    roles = {i: "stop" if n == min(1, len(live_ids) - 1) else "run" for n, i in enumerate(live_ids)}
    image, runs, slow = IMAGE.read_bytes(), [], Visitor(app, "slow-reader", "192.0.2.201")
    with ThreadPoolExecutor(plan.students + 2) as pool:
        futures = [
            pool.submit(student, app, plan, i, calls, image, end, roles.get(i), runs) for i in range(plan.students)
        ]
        futures.append(pool.submit(live_run, app, plan, slow, calls, image, end, "slow", runs))
        time.sleep(plan.flood_delay_s)
        flooding = pool.submit(flood, app, plan, end)
        wait([*futures, flooding], timeout=plan.deadline_s + 120)
        flooded = flooding.result(timeout=1) if flooding.done() else {"error": "did not end"}
    return runs, flooded


def classroom_test(plan: Plan = Plan(), app_root: Path = ROOT, say: Callable[[str], None] = lambda s: None) -> dict:
    """Serve the app of ``app_root`` in a subprocess and play the class; the report (``verdict`` reads it)."""
    started, facts, calls = time.perf_counter(), machine(), []
    server = Server(app_root)
    say(f"server up at {server.url} in {time.perf_counter() - started:.1f} s")
    try:
        app = App.read(server.url)
        warm_run = warm_up(app, plan, calls)
        say(f"warm-up run: {warm_run.ok} {warm_run.message or ''}")
        direct = direct_call(app)
        say(f"direct POST /gradio_api/run/replay: {direct.get('status')}")
        rss_class, t_class = server.mark("class"), time.perf_counter()
        runs, flooded = the_class(app, plan, calls, t_class + plan.deadline_s)
        class_s = time.perf_counter() - t_class
        say(f"class over in {class_s:.1f} s; flood: {flooded.get('codes')}")
        server.mark("after")
        after = [me.downloads(run) for me, run in runs if run.answered and run.ok]  # once more, after the flood
        end = Visitor(app, "end", "192.0.2.203")
        end_replay = end.call("end_replay", "replay", app.replay_args(random.Random(3)), 60.0)
        say(f"a fresh replay after the class: {end_replay.ok} in {end_replay.seconds:.1f} s")
        for me in [end, *(me for me, _ in runs)]:
            me.http.close()
        thin = long_thin(app, plan, server)
        say(f"long-thin {plan.thin}: {thin.get('answer')} ({thin.get('message') or thin.get('observation_size')})")
        alive, hwm, rss_end = server.proc.poll() is None, rss_mb(server.pid, "VmHWM"), server.sample()
    finally:
        server_log = log_summary(server.tail(200_000))
        server.stop()
    report = summarise(calls, plan)
    report.update(
        long_thin=thin,
        flood=flooded,
        direct_run_replay=direct,
        downloads_after_flood=tally(after),
        queue_serves_at_end=end_replay.answered and end_replay.ok,
        end_replay={
            "answered": end_replay.answered,
            "seconds": rounded(end_replay.seconds),
            "message": end_replay.message,
        },
        server_alive_at_end=alive,
        server_rss_mb={  # after_warm_up: read when the server came up, before the warm-up run
            "after_warm_up": rounded(server.at_start, 1),
            "class_start": rounded(rss_class, 1),
            "class_peak": rounded(server.peaks.get("class"), 1),
            "peak": rounded(max(server.peaks.values()), 1),
            "end": rounded(rss_end, 1),
            "vm_hwm_since_long_thin": rounded(hwm, 1),
        },
        warm_up={"ok": warm_run.ok, "seconds": rounded(warm_run.seconds), "message": warm_run.message},
        class_s=round(class_s, 1),
        wall_s=round(time.perf_counter() - started, 1),
        machine=facts,
        app=git_state(Path(app_root)) | {"root": str(app_root)},
        server_log=server_log,
    )
    report["fails"] = verdict(report)
    return report


# ---------------------------------------------------------------------------------------------------- the report


def log_summary(text: str) -> dict:
    """The server log's tracebacks (how many, the first one's last lines) and its last lines."""
    blocks = text.split("Traceback (most recent call last):")[1:]
    first = blocks[0].strip().splitlines()[-12:] if blocks else []
    return {"tracebacks": len(blocks), "first_traceback_end": first, "tail": text.strip().splitlines()[-8:]}


def summarise(calls: list[Call], plan: Plan) -> dict:
    """Answers and p50 / p95 latency per kind of event, honest events lost, live frames' gaps, Stop's delay."""
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
    return {
        "mode": "classroom",
        "plan": asdict(plan),
        "events": events,
        "honest_events": len(honest),
        "honest_lost": sum(not c.answered for c in honest),
        "honest_refused_or_failed": sum(c.answered and not c.ok for c in honest),
        "harness_errors": [c.message for c in calls if c.kind == "harness_error"],
        "live_runs": [c.summary() for c in runs],
        # the students' runs (the slow reader's gaps are its own pauses)
        "live_largest_frame_gap_s": largest_gap(*(c.frames for c in lives)),
        "stop_delay_s": rounded(max(delays)) if delays else None,
        "latencies_over": "answered events (a refusal or an HTTP error is an answer); ok_*: successful ones only",
        "calls": [c.row() for c in calls],
        "downloads": tally([c.extra.get("downloads") for c in runs if c.answered and c.ok]),
    }


def verdict(r: dict) -> list[str]:
    """The issue's done-when criteria that failed (empty: the class was served)."""
    fails = []
    if r["honest_lost"]:
        lost = {k: e["lost"] for k, e in r["events"].items() if e.get("lost")}
        fails.append(f"{r['honest_lost']} honest events lost (never completed): {lost}")
    if r.get("harness_errors"):
        fails.append(f"visitors that could not go on: {r['harness_errors'][:3]}")
    replay = r["events"].get("replay", {})
    p95 = replay.get("ok_p95_s", replay.get("p95_s"))
    if p95 is None or p95 > REPLAY_P95_S:
        fails.append(f"replay scrubs answered in {p95} s at p95 (bound {REPLAY_P95_S} s)")
    if replay.get("refused_or_failed"):
        fails.append(f"{replay['refused_or_failed']} replay scrubs refused or failed: {replay.get('messages', [])[:2]}")
    if r.get("stop_delay_s") is None or r["stop_delay_s"] > STOP_S:
        fails.append(f"Stop took {r.get('stop_delay_s')} s to end the run (bound {STOP_S} s)")
    d, after = r.get("downloads", {}), r.get("downloads_after_flood", {})
    if d.get("ok") != d.get("runs") or after.get("ok") != after.get("runs"):
        fails.append(f"downloads not served: {d.get('codes')}, after the flood {after.get('codes')}")
    thin = r.get("long_thin", {})
    if thin.get("answer") not in ("refused", "within max_side", "upload refused"):
        fails.append(f"the {thin.get('size')} image: {thin.get('answer')} ({thin.get('message')})")
    if thin.get("rss_delta_mb") is None or thin["rss_delta_mb"] > THIN_MB:
        fails.append(
            f"the {thin.get('size')} image took the server {thin.get('rss_delta_mb')} MB more (bound {THIN_MB})"
        )
    status = (r.get("direct_run_replay") or {}).get("status")
    if status is None or not 400 <= status < 500:
        fails.append(f"a direct POST /gradio_api/run/replay answered HTTP {status} (should be refused, 4xx)")
    if not r.get("queue_serves_at_end"):
        fails.append(f"the queue no longer serves a fresh replay: {(r.get('end_replay') or {}).get('message')}")
    return fails


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


def main(argv: list[str] | None = None) -> int:
    p = parser("load --classroom", __doc__, json=False)
    p.add_argument("--small", action="store_true", help="6 students, 1 live run, a 300-join flood (under a minute)")
    p.add_argument("--one-address", action="store_true", help="the whole class behind one address (a school's NAT)")
    p.add_argument("--app-root", type=Path, default=ROOT, help="serve the app of this tree (default: this one)")
    p.add_argument("--students", type=int, default=None)
    p.add_argument("--live", type=int, default=None, help="students who press Run")
    p.add_argument("--flood-joins", type=int, default=None)
    p.add_argument("--flood-fn", choices=("replay", "default_image", "run", "play"), default=None)
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
        name = "classroom" + ("_small" if args.small else "") + ("_one_address" if args.one_address else "")
        out = args.out or REPORTS / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
        if out.parent.resolve() == REPORTS.resolve():
            (REPORTS / "README.md").write_text(readme(REPORTS))
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
    else:
        keep = ("honest_lost", "honest_events", "stop_delay_s", "live_largest_frame_gap_s", "queue_serves_at_end")
        print("\n".join(f"{k}: {r[k]}" for k in keep))
        print("fails:" + "".join(f"\n  - {f}" for f in r["fails"]) if r["fails"] else "fails: none")
    return 0 if not r["fails"] else 1
