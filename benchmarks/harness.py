"""The load benchmarks' harness: the app served (in this process or in a subprocess), visitors speaking Gradio's queue
protocol or gradio_client, and the figures their reports share (percentiles, RSS, temp disk)."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "assets" / "house256.png"
HOPS = "SPECTRAL_BIAS_LAB_PROXY_HOPS"


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (None for no values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))] if values else None


def rounded(x: float | None, digits: int = 3) -> float | None:
    """``x`` rounded (None stays None)."""
    return None if x is None else round(x, digits)


def stats(values: list[float]) -> dict:
    """p50, p95 (nearest rank) and max (rounded) and how many."""
    p50, p95, top = percentile(values, 50), percentile(values, 95), max(values, default=None)
    return {"p50_s": rounded(p50), "p95_s": rounded(p95), "max_s": rounded(top), "n": len(values)}


def spread(values: list[float], digits: int, keys: str = "median p90 max") -> dict:
    """The median, p90 (``sorted[int(0.9 n)]``) and max of ``values`` named in ``keys``, rounded (None: no values)."""
    s = sorted(values)
    get = {"median": lambda: statistics.median(s), "p90": lambda: s[int(0.9 * len(s))], "max": lambda: s[-1]}
    return {k: round(get[k](), digits) if s else None for k in keys.split()}


def largest_gap(*series: list[float]) -> float | None:
    """The most seconds between consecutive times of any series (rounded; None for no two)."""
    return rounded(max((b - a for times in series for a, b in zip(times, times[1:])), default=None))


def failure(err: Exception, n: int = 300) -> str:
    """An exception as one line: its type and message, cut to ``n`` characters."""
    return f"{type(err).__name__}: {err}"[:n]


def rss_mb(pid: int | str = "self", field_name: str = "VmRSS") -> float | None:
    """A process's resident set (VmRSS) or its peak (VmHWM) in MB, from /proc (None when unreadable)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return next((int(ln.split()[1]) / 1024 for ln in lines if ln.startswith(field_name + ":")), None)
    except (OSError, ValueError, IndexError):
        return None


def tree_rss_mb(pid: int) -> float | None:
    """The resident sets of a process and its children (the app's run worker), in MB (None: the process is gone)."""
    own = rss_mb(pid)
    try:
        kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
    except (OSError, ValueError):
        kids = []
    return None if own is None else own + sum(tree_rss_mb(k) or 0.0 for k in kids)


def settled_rss_mb() -> float | None:
    """This process's RSS after a collection and glibc's malloc_trim (freed memory handed back): what is in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the plain figure
        pass
    return rss_mb()


def temp_usage() -> dict:
    """MB and files under the app's download root (served in this process), and how many stop files exist."""
    from demo.exports import download_root
    from demo.session import STOP_DIR

    sizes = [_size(p) for p in download_root().rglob("*")] if download_root().is_dir() else []
    files = [size for size in sizes if size is not None]
    stops = len(list(STOP_DIR.glob("*"))) if STOP_DIR.is_dir() else 0
    return {"mb": round(sum(files) / 2**20, 2), "files": len(files), "stop_files": stops}


def _size(path: Path) -> int | None:
    """A file's size, or None for a folder or a file deleted since it was listed (the app cleans up as we read)."""
    try:
        return path.stat().st_size if path.is_file() else None
    except FileNotFoundError:
        return None


class Peaks:
    """A daemon thread reading ``read()`` every ``every`` s: the largest reading per phase (``mark`` starts one)."""

    def __init__(self, read: Callable[[], float | None], every: float = 0.1) -> None:
        self.read, self.every, self.phase, self.peaks = read, every, "start", {}
        self.done, self.thread = threading.Event(), threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def sample(self) -> float | None:
        """A reading now, kept in the current phase's peak."""
        value = self.read()
        if value is not None:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, value), value)
        return value

    def watch(self) -> None:
        while not self.done.wait(self.every):
            self.sample()

    def mark(self, phase: str) -> float | None:
        """Start ``phase``; the reading at its start."""
        self.phase = phase
        return self.sample()

    def peak(self, initial: float = 0.0) -> float:
        """The largest reading of every phase (at least ``initial``)."""
        return max([initial, *self.peaks.values()])

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


class Footprint:
    """This process's RSS and the app's temp disk: settled before, sampled for their peaks, then after."""

    def __init__(self, every: float = 1.0) -> None:
        self.rss0, self.disk0 = settled_rss_mb(), temp_usage()
        self.rss, self.disk = Peaks(rss_mb, every), Peaks(lambda: temp_usage()["mb"], every)

    def report(self, pause: float = 0.0) -> dict:
        """Stop sampling; ``rss_mb`` and ``temp`` before, at their peak and after (``pause`` seconds later)."""
        self.rss.stop()
        self.disk.stop()
        time.sleep(pause)
        rss1, disk1, peak = settled_rss_mb(), temp_usage(), self.rss.peak(self.rss0 or 0.0)
        return {
            "rss_mb": {"before": rounded(self.rss0, 1), "peak": rounded(peak, 1), "after": rounded(rss1, 1)},
            "temp": {"before": self.disk0, "peak_mb": self.disk.peak(self.disk0["mb"]), "after": disk1},
        }


def serve(queue_size: int, proxied: bool = False) -> tuple:
    """The app served on loopback in this process (``proxied``: trusting one proxy hop, as a Space); (blocks, url)."""
    from app import make_app
    from demo.ui import launch_options

    saved = os.environ.get(HOPS)
    if proxied:
        os.environ[HOPS] = "1"
    try:
        demo = make_app(queue_size=queue_size)
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    finally:
        if proxied and saved is None:
            os.environ.pop(HOPS)
        elif proxied:
            os.environ[HOPS] = saved
    return demo, url


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
    """The app of ``root`` served by a subprocess on a free loopback port (one trusted proxy hop, a temp folder of its
    own); ``rss`` keeps its peak RSS per phase, read from /proc every 0.1 s."""

    def __init__(self, root: Path = ROOT, start_timeout: float = 120.0) -> None:
        self.temp = tempfile.TemporaryDirectory(prefix="classroom-", ignore_cleanup_errors=True)
        self.log, self.rss = Path(self.temp.name) / "server.log", None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(root), HOPS: "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        env.update(GRADIO_TEMP_DIR=str(Path(self.temp.name) / "gradio"))
        env.pop("SPACE_ID", None)
        with open(self.log, "w") as log:
            command = [sys.executable, "-c", SERVER, str(port)]
            self.proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url, self.pid, deadline = f"http://127.0.0.1:{port}/", self.proc.pid, time.monotonic() + start_timeout
        while "SERVING" not in self.tail(None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                error = f"the server did not start in {start_timeout:.0f} s (exit {self.proc.poll()}): {self.tail()}"
                self.stop()
                raise RuntimeError(error)
            time.sleep(0.25)
        self.rss = Peaks(lambda: tree_rss_mb(self.pid))  # the app's process and its run worker
        self.at_start = self.rss.mark("start")

    def tail(self, n: int | None = 1500) -> str:
        """The last ``n`` characters of the server's output (None: all of it)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-n:] if n else text

    def stop(self) -> None:
        """Stop the sampler and the server, and remove its temp folder."""
        if self.rss is not None:
            self.rss.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.temp.cleanup()


def new_client(url: str, headers: dict | None = None) -> Client:
    """A gradio_client on ``url`` that downloads into its own temporary folder."""
    return Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="load-"), headers=headers)


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


@dataclass
class App:
    """What a visitor reads from the server: the events' indexes, the run's parameters, the replay choices."""

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
        url = url.rstrip("/") + "/"
        config = httpx.get(url + "config", timeout=60).json()
        props = {c["id"]: c.get("props", {}) for c in config["components"]}
        by_elem, deps = {p.get("elem_id"): i for i, p in props.items()}, config["dependencies"]
        fn = {d["api_name"]: d for d in deps if d.get("api_name")}
        for name, button in {"stop": "stop", "play": "replay_play", "next_lesson": "replay_next"}.items():
            if name not in fn:  # the event the button (an elem_id) triggers
                fn[name] = next(d for d in deps if any(t[0] == by_elem.get(button) for t in d["targets"]))

        def choices(elem_id: str) -> list[str]:
            values = [c[1] if isinstance(c, list) else c for c in props[by_elem[elem_id]]["choices"]]
            return [v for v in values if v]

        info = httpx.get(url + "gradio_api/info", timeout=60).json()["named_endpoints"]["/run"]["parameters"]
        slider = props[by_elem["replay_iteration"]]
        return cls(
            url=url,
            fn={name: d["id"] for name, d in fn.items()},
            run_params=[(p["parameter_name"], p.get("parameter_default")) for p in info],
            files_index=[props[c].get("elem_id") for c in fn["run"]["outputs"]].index("downloads"),
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
        """A random replay scrub: experiment, lane, the lane beside it, iteration."""
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
        """The report's entry for a live run."""
        out = {"kind": self.kind, "who": self.who, "answered": self.answered, "ok": self.ok}
        out.update(seconds=rounded(self.seconds), message=self.message)
        if self.frames:
            out.update(frames=len(self.frames), first_frame_s=rounded(self.frames[0]))
            out["largest_gap_s"] = largest_gap(self.frames)
        if self.start_s is not None:
            out["start_s"] = rounded(self.start_s)
        return {**out, **self.extra}

    def row(self, since: float) -> list:
        """The report's line for every event: kind, visitor, answered, ok, seconds, started, first frame, frames,
        and when it was sent (seconds from ``since``, a perf_counter time: the class's start)."""
        times = (self.seconds, self.start_s, min(self.frames, default=None))
        sent = round(self.t0 - since, 2)
        return [self.kind, self.who, self.answered, self.ok, *map(rounded, times), len(self.frames), sent]

    def status(self, n: int) -> str | None:
        """The run's status line (its 7th output), cut to ``n`` characters."""
        return str(self.output[6])[:n] if self.output and len(self.output) > 6 else None

    def on(self, msg: str | None, line: str) -> None:
        """Note one message of the event's stream (a final one: the answer, its output or its error)."""
        if msg == "process_starts":
            self.start_s = time.perf_counter() - self.t0
        elif msg == "process_generating":
            self.frames.append(time.perf_counter() - self.t0)
        elif msg == "process_completed":
            self.done()
            final = json.loads(line[5:])
            self.answered, self.ok, output = True, bool(final.get("success")), final.get("output") or {}
            self.output, self.message = output.get("data"), None if self.ok else str(output.get("error"))[:300]
        elif msg in ("unexpected_error", "http_error"):
            self.message = line[:300]


class Visitor:
    """One browser tab (a session hash) from one address, speaking Gradio's queue protocol as the page or a script
    does (values no client library sends, NaN or 10^400, included); ``app``: the App or its URL."""

    def __init__(self, app: App | str, address: str, who: str = "visitor", **client: object) -> None:
        self.app = App.read(app) if isinstance(app, str) else app
        self.who, self.address, self.session = who, address, f"{who}-{secrets.token_hex(4)}"
        self.fn, self.headers = self.app.fn, {"X-Forwarded-For": address}
        self.http = httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), headers=self.headers, **client)

    def post(self, path: str, body: dict) -> httpx.Response:
        """POST ``body`` as JSON that may hold NaN and huge integers."""
        headers = {"content-type": "application/json"}
        return self.http.post(self.app.url + path, content=json.dumps(body, allow_nan=True), headers=headers)

    def page(self) -> Call:
        """Open the page: GET / and /config."""
        call = Call("page", self.who)
        try:
            codes = [self.http.get(self.app.url + p).status_code for p in ("", "config")]
            call.answered, call.ok = True, codes == [200, 200]
            call.message = None if call.ok else f"HTTP {codes}"
        except httpx.HTTPError as err:
            call.message = failure(err, 200)
        return call.done()

    def upload(self, name: str, data: bytes | None = None) -> tuple[Call, dict | None]:
        """Upload a file (``data``, else the file at ``name``): the Call, and the FileData for a run (None: refused)."""
        call, path = Call("upload", self.who), None
        data = Path(name).read_bytes() if data is None else data
        try:
            r = self.http.post(self.app.url + "gradio_api/upload", files={"files": (Path(name).name, data)})
            call.answered, call.ok, call.extra["status"] = True, r.status_code == 200, r.status_code
            path = r.json()[0] if call.ok else None
            call.message = None if call.ok else r.text[:200]
        except (httpx.HTTPError, ValueError, IndexError) as err:
            call.message = failure(err, 200)
        return call.done(), ({"path": path, "meta": {"_type": "gradio.FileData"}} if path else None)

    def join(self, fn: str, data: list, session: str | None = None) -> tuple[int, str]:
        """POST /queue/join for the event ``fn``; (status code, text) of the answer (the event is not read)."""
        body = {"data": data, "fn_index": self.fn[fn], "session_hash": session or self.session}
        r = self.post("gradio_api/queue/join", {**body, "event_data": None, "trigger_id": None})
        return r.status_code, r.text

    def stop(self, session: str | None = None) -> int:
        """Press Stop (the app serves it outside the queue): the HTTP status."""
        body = {"data": [], "fn_index": self.fn["stop"], "session_hash": session or self.session}
        return self.post("gradio_api/run/predict", body).status_code

    def call(self, kind: str, fn: str, data: list, timeout: float, on_message: Callable | None = None) -> Call:
        """Join ``fn`` with ``data`` and read the event stream until the event's final message, or ``timeout``
        seconds (``on_message(call, msg)`` sees every other message)."""
        call = Call(kind, self.who)
        try:
            code, text = self.join(fn, data)
            if code != 200:
                call.answered, call.message = True, f"HTTP {code}: {text[:160]}"
                return call.done()
            for msg, line in self.stream(call.t0 + timeout, json.loads(text).get("event_id")):
                call.on(msg, line)
                if call.answered:
                    break
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

    def close(self) -> None:
        self.http.close()
