"""A public Space that one visitor cannot take down: fair turns, bounded runs, runs nobody reads, Stop while queued,
stop files, config uploads, what the downloads record, and the hostile crowd (benchmarks/load.py --crowd, small)."""

from __future__ import annotations

import json
import os
import re
import time

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import wait_for

from benchmarks import load
from demo import errors, events, guards, turns
from demo.exports import read_config, write_downloads
from demo.frames import stream
from demo.inputs import parse_request
from demo.session import STOP_DIR, STOPS, LabRun
from demo.settings import LIMITS
from dip_core import InputError, RunConfig, make_task, run
from dip_core.io import load_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(max_side=32, width=8, lr=0.01)


@pytest.fixture(scope="module")
def space(monkeypatch_module):
    """The app as on a Space (one trusted proxy hop), with 2 live runs waiting at most: one per address."""
    monkeypatch_module.setenv(turns.PROXY_HOPS_ENV, "1")
    demo, url = load.serve(2)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def visitor(url: str, address: str, tmp_path) -> Client:
    return Client(url, verbose=False, download_files=str(tmp_path), headers={"X-Forwarded-For": address})


def test_the_visitor_address_is_what_the_trusted_proxy_saw():
    # the right-most entry is the proxy's; entries a visitor wrote itself are to its left and never count
    assert turns.client_address({"x-forwarded-for": "1.2.3.4, 203.0.113.9"}, "10.0.0.1", 1) == "203.0.113.9"
    assert turns.client_address({"x-forwarded-for": "203.0.113.9"}, "10.0.0.1", 1) == "203.0.113.9"
    assert turns.client_address({"x-forwarded-for": "a, b, c"}, "10.0.0.1", 2) == "b"
    assert turns.client_address({"x-forwarded-for": "203.0.113.9"}, "127.0.0.1", 0) == "127.0.0.1"  # no proxy
    assert turns.client_address({}, "127.0.0.1", 1) == "127.0.0.1"  # no header: the peer


def test_proxy_hops_is_one_on_a_space_and_zero_elsewhere(monkeypatch):
    monkeypatch.delenv(turns.PROXY_HOPS_ENV, raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert turns.proxy_hops() == 0
    monkeypatch.setenv("SPACE_ID", "someone/spectral-bias-lab")
    assert turns.proxy_hops() == 1
    monkeypatch.setenv(turns.PROXY_HOPS_ENV, "2")
    assert turns.proxy_hops() == 2


def test_a_visitor_holds_one_live_run_and_an_address_half_the_queue(space, tiny_png, tmp_path):
    demo, url = space
    first = visitor(url, "198.51.100.1", tmp_path)
    same_address = visitor(url, "198.51.100.1", tmp_path)
    spoofing = visitor(url, "203.0.113.5, 198.51.100.1", tmp_path)  # a forged entry left of the proxy's
    other = visitor(url, "198.51.100.2", tmp_path)
    try:
        job = first.submit(image=handle_file(tiny_png), iterations=3000, **TINY, api_name="/run")
        assert wait_for(lambda: demo._spectral_turns.holds(first.session_hash, running=True), 60)
        t0 = time.perf_counter()
        with pytest.raises(AppError, match="a run of yours is already running: press Stop"):
            first.predict(image=handle_file(tiny_png), iterations=10, **TINY, api_name="/run")
        for client in (same_address, spoofing):
            with pytest.raises(
                AppError,
                match=r"^your network address already has 1 live run waiting or running, its share of the queue",
            ):
                client.predict(image=handle_file(tiny_png), iterations=10, **TINY, api_name="/run")
        assert time.perf_counter() - t0 < 10  # refused at once, not after waiting
        # replays and every other event are never refused by live runs
        assert len(other.predict("denoise_house", "lam2", "vanilla", 300, api_name="/replay")) == 8
        waiting = other.submit(image=handle_file(tiny_png), iterations=10, **TINY, api_name="/run")  # another address
        first.predict(api_name="/stop")
        assert str(job.result(timeout=60)[6]).startswith("Stopped at iteration")
        assert str(waiting.result(timeout=60)[6]).startswith("Done")
    finally:
        for client in (first, same_address, spoofing, other):
            client.close()


def test_a_run_nobody_reads_stops_within_seconds_and_leaves_nothing(space, tiny_png):
    demo, url = space
    raw = load.Visitor(url, "198.51.100.7")
    image = raw.upload(tiny_png)[1]
    stop_files = len(list(STOP_DIR.glob("*"))) if STOP_DIR.is_dir() else 0
    code, _ = raw.join("run", raw.app.run_data(image, iterations=5000, **TINY), "never-reads")  # never opens the stream
    assert code == 200
    assert wait_for(lambda: demo._spectral_turns.holds("never-reads", running=True), 60)
    t0 = time.perf_counter()
    assert wait_for(lambda: not demo._spectral_turns.holds("never-reads"), turns.ABANDON_S + 30)
    assert time.perf_counter() - t0 < turns.ABANDON_S + 30
    assert wait_for(lambda: STOPS.active() == 0, 10)
    unread = demo._queue.pending_messages_per_session.get("never-reads")
    assert wait_for(lambda: unread is None or unread.qsize() <= turns.MAX_BACKLOG, 5)  # frames were not queued
    assert (len(list(STOP_DIR.glob("*"))) if STOP_DIR.is_dir() else 0) <= stop_files


def test_stop_pressed_while_the_run_waits_means_it_never_starts(space, tiny_png, tmp_path):
    demo, url = space
    running, queued = visitor(url, "198.51.100.3", tmp_path), visitor(url, "198.51.100.4", tmp_path)
    try:
        job = running.submit(image=handle_file(tiny_png), iterations=3000, **TINY, api_name="/run")
        assert wait_for(lambda: demo._spectral_turns.holds(running.session_hash, running=True), 60)
        later = queued.submit(image=handle_file(tiny_png), iterations=3000, **TINY, api_name="/run")
        assert wait_for(lambda: demo._spectral_turns.holds(queued.session_hash, running=False), 30)
        queued.predict(api_name="/stop")
        running.predict(api_name="/stop")
        assert str(job.result(timeout=60)[6]).startswith("Stopped")
        with pytest.raises(AppError, match="stopped while it waited in the queue: the run did not start"):
            later.result(timeout=60)
        assert later.outputs() == []  # not one frame
    finally:
        running.close()
        queued.close()


def test_session_hashes_never_become_file_names(space):
    _, url = space
    raw = load.Visitor(url, "198.51.100.9")
    before = sorted(STOP_DIR.glob("*")) if STOP_DIR.is_dir() else []
    for i in range(20):
        body = {"data": [], "fn_index": raw.fn["stop"], "session_hash": f"{i}-" + "a" * 300}
        r = httpx.post(
            url + "gradio_api/run/predict",
            content=json.dumps(body),
            headers={**raw.headers, "content-type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 200, r.text[:300]
    assert (sorted(STOP_DIR.glob("*")) if STOP_DIR.is_dir() else []) == before  # no run: no file
    assert len(STOPS.path("a" * 300).name) == 40


def test_a_cpu_run_ends_at_its_time_limit_and_keeps_its_downloads(tiny_png, tmp_path):
    from dataclasses import replace

    lab = LabRun(parse_request(tiny_png, iterations=5000, compare=True, **TINY), limits=replace(LIMITS, run_seconds=2))
    frames = list(stream(lab.stream()))
    assert frames[-1].done and 0 < lab.current_iter < 5000
    assert "time limit (2 s) was reached" in frames[-1].status, frames[-1].status
    assert any("(it ends at the 2 s limit, near iteration " in f.status for f in frames[:-1])  # told before it ends
    files = write_downloads(frames[-1].run, tmp_path, frames[-1].animation)
    assert {os.path.basename(f) for f in files} >= {"result.png", "result_vanilla.png", "log.json", "config.json"}
    assert LIMITS.run_seconds == 300  # the stated limit (docs/app.md)


def test_config_uploads_are_bounded(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"task": "denoise", "pad": "x" * 100_000}))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 30_000 + "]" * 30_000)
    with pytest.raises(InputError, match=r"^not a config JSON file \(larger than 64 KB\)$"):
        read_config(big)
    with pytest.raises(InputError, match=r"^not a config JSON file \(nested too deep\)$"):
        read_config(deep)


def test_the_downloads_record_the_path_that_ran_and_reload_to_the_same_curve(tiny_png, tmp_path):
    lab = LabRun(parse_request(tiny_png, iterations=20, compare=False, **TINY))
    *_, last = lab.stream()
    write_downloads(last, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    log = json.loads((tmp_path / "log.json").read_text())
    assert config["conv_algo"] != "auto" and config["device"] == "cpu"
    assert log["controlled"]["config"]["conv_algo"] == config["conv_algo"]
    # the same curve from the downloaded config alone (same machine, same threads), with no choice left to time
    img, _ = load_image(tiny_png, config["max_side"])
    task = make_task(config["task"], img, config["level"], seed=config["seed"])
    rerun = RunConfig.from_dict({k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__})
    again = [s.record()["loss"] for s in run(task, rerun)]
    assert again == [r["loss"] for r in log["controlled"]["records"]]


def test_a_hostile_crowd_does_not_deny_the_space_to_others():
    """benchmarks.load --crowd, small: a greedy address fills its share, abandons its runs, sends bad values and
    200-character session hashes to Stop; replay viewers and honest live clients are all served meanwhile."""
    r = load.crowd_test(small=True, timeout=240)
    assert load.crowd_ok(r) == [], json.dumps(r)[:3000]
    assert r["greedy"]["admitted"] == r["address_share"] and r["refused"] >= 1


def test_every_refusal_and_error_is_one_line_of_ours():
    for message in (
        turns.BUSY.format(what="running"),
        turns.ADDRESS_FULL.format(runs="4 live runs"),
        turns.LIVE_FULL.format(n=8),
        errors.INTERNAL.format(kind="KeyError"),
    ):
        assert load.leaked(message) is None and "\n" not in message
    assert load.leaked("Traceback (most recent call last):") and load.leaked("[Errno 36] File name too long")


# ---------------------------------------------------------------- docs/bad-input.md, the public Space's table

PUBLIC_ROWS = (
    "a number too large for a float (seed, max_side or λ of 10⁴⁰⁰)",
    "a level of 10⁴⁰⁰",
    "a replay iteration of NaN or 10⁴⁰⁰ (raw JSON)",
    "a value of the wrong type (a list for upsample, an object for width)",
    "a config JSON over 64 KB",
    "a config JSON nested 100,000 deep",
    "an upload over 20 MB",
    "a 300-character session hash sent to Stop",
    "a second live run from the same visitor",
    "more live runs from one address than half the queue",
    "a full live queue",
    "an error the app did not foresee",
    "more new sessions from one address than its budget (120 at once, then one a second: a script joining with fresh "
    "session hashes)",
    "more waiting requests (replays, uploads described, …) from one address than half of the 256 waiting places",
    "a request body over 21 MB (a queue join's JSON, a mask-editor call)",
    "a direct REST call to a queued endpoint (`POST /gradio_api/run/replay`)",
)
HUGE = 10**400
RUN_ROWS = [
    (dict(seed=HUGE), r"^seed must be a number between 0 and [\d.e+]+, got 10{38}…$"),
    (dict(max_side=HUGE), r"^max_side must be a number between 32 and 256, got 10{38}…$"),
    (dict(lipschitz=HUGE), r"^lipschitz must be a number between 0 and 5, got 10{38}…$"),
    (dict(level=HUGE), r"^noise σ \(0-255\) must be a number between 0 and 255, got 10{38}…$"),
    (dict(upsample=["x"]), r"^upsample must be one of bilinear, nearest, gaussian, got \['x'\]$"),
    (dict(width={"a": 1}), r"^width must be a number between 8 and 64, got \{'a': 1\}$"),
]


def error_of(call) -> str:
    assert call.answered and not call.ok, call
    return str(call.message)


@pytest.mark.parametrize(("kwargs", "expected"), RUN_ROWS)
def test_values_no_float_holds_are_one_line_through_run(space, tiny_png, kwargs, expected):
    _, url = space
    raw = load.Visitor(url, f"198.51.100.{20 + len(str(kwargs)) % 50}")
    final = raw.call(
        "run", "run", raw.app.run_data(raw.upload(tiny_png)[1], **{**TINY, "iterations": 10, **kwargs}), 60
    )
    assert re.match(expected, error_of(final)), error_of(final)


@pytest.mark.parametrize("value", [float("nan"), HUGE])
def test_a_replay_iteration_no_float_holds_is_one_line(space, value):
    _, url = space
    final = load.Visitor(url, "198.51.100.80").call("replay", "replay", ["denoise_house", "lam2", "", value], 60)
    assert error_of(final).startswith("iteration must be a number between 0 and "), error_of(final)


def message_of(fn, *args) -> str:
    """The one line a ``gr.Error`` raised by ``fn(*args)`` shows (``str`` of a gr.Error is quoted)."""
    import gradio as gr

    with pytest.raises(gr.Error) as err:
        result = fn(*args)
        list(result) if hasattr(result, "__next__") else result
    return err.value.message


def test_config_rows_through_the_config_upload(tmp_path):
    load_config = errors.guarded(events.load_config)  # as the upload button calls it
    big, deep, small_deep = tmp_path / "big.json", tmp_path / "deep.json", tmp_path / "small_deep.json"
    big.write_text(json.dumps({"task": "denoise", "pad": "x" * 100_000}))
    deep.write_text("[" * 100_000 + "]" * 100_000)
    small_deep.write_text("[" * 30_000 + "]" * 30_000)  # under 64 KB, yet deeper than the parser's recursion
    assert message_of(load_config, str(big)) == "config: not a config JSON file (larger than 64 KB)"
    assert message_of(load_config, str(deep)) == "config: not a config JSON file (larger than 64 KB)"
    assert message_of(load_config, str(small_deep)) == "config: not a config JSON file (nested too deep)"


def test_an_upload_over_20_mb_is_refused_before_it_is_kept(space, tmp_path):
    _, url = space
    blob = tmp_path / "big.png"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(21 * 2**20))
    with open(blob, "rb") as fh:
        r = httpx.post(url + "gradio_api/upload", files={"files": fh}, timeout=60)
    assert r.status_code == 413, r.text[:200]


def test_a_full_live_queue_is_refused_and_other_events_are_not():
    class FakeQueue:
        def __init__(self, events):
            self.event_queue_per_concurrency_id = {"run": type("Q", (), {"queue": events})()}
            self.active_jobs = []

    def event(session, address, api="run"):
        fn = type("Fn", (), {"api_name": api})()
        request = type("R", (), {"headers": {"x-forwarded-for": address}, "client": None})()
        return type("E", (), {"fn": fn, "session_hash": session, "request": request, "alive": True})()

    waiting = [event(f"s{i}", f"192.0.2.{i}") for i in range(8)]
    rules = turns.Turns(type("B", (), {"_queue": FakeQueue(waiting)})(), hops=1)
    assert rules.refusal(True, "new", "192.0.2.99") == turns.LIVE_FULL.format(n=8)
    assert rules.refusal(False, "new", "192.0.2.99") is None  # a replay, an upload described: never refused by runs
    assert rules.refusal(True, "s1", "192.0.2.1").startswith("a run of yours is already waiting in the queue")


def test_an_error_the_app_did_not_foresee_is_one_line_of_ours():
    def broken():
        return {}["missing"]

    def broken_stream():
        yield 1
        raise OSError(2, "No such file or directory", "/tmp/gradio/secret/path.png")

    assert message_of(errors.guarded(broken)) == errors.INTERNAL.format(kind="KeyError")
    assert message_of(errors.guarded(broken_stream)) == errors.INTERNAL.format(kind="FileNotFoundError")


# ---------------------------------------------------------------- a classroom (issue 32): addresses, sessions, readers


def test_addresses_are_normalised_and_ipv6_is_one_visitor_per_64():
    assert turns.normal_address("203.0.113.9") == "203.0.113.9"
    assert turns.normal_address(" 203.0.113.9:5555 ") == "203.0.113.9"
    assert turns.normal_address("::ffff:203.0.113.9") == "203.0.113.9"  # IPv4-mapped
    a = turns.normal_address("2001:db8:1:2::1")
    assert a == turns.normal_address("2001:DB8:1:2:ffff:ffff:ffff:fffe") == "2001:db8:1:2::/64"
    assert turns.normal_address("[2001:db8:1:2::7]:443") == a
    assert turns.normal_address("2001:db8:1:3::1") != a  # the next /64 is another visitor
    assert turns.normal_address("Not-An-Address" + "x" * 100) == ("not-an-address" + "x" * 100)[:64]
    forwarded = {"x-forwarded-for": "1.2.3.4, 2001:db8:9:9::5"}
    assert turns.client_address(forwarded, "10.0.0.1", 1) == "2001:db8:9:9::/64"


def test_sessions_evict_the_least_recently_used_idle_visitor_never_a_busy_one():
    busy = {"waiting"}
    table = turns.Sessions(lambda: busy, max_size=3)
    for key in ("waiting", "idle1", "idle2"):
        table[key] = key
    table.touch("idle1")  # a message was sent to it: idle2 is now the least recently used idle one
    table["new1"] = "new1"  # evicts idle2; "waiting" is older but busy
    assert list(table) == ["waiting", "idle1", "new1"]
    busy |= {"idle1", "new1"}
    assert table.full() and table.idle() is None
    busy.discard("new1")
    assert not table.full()


def test_new_sessions_per_address_come_in_a_burst_then_one_per_period():
    now = [0.0]
    budget = turns.NewSessions(burst=3, period=2.0, clock=lambda: now[0])
    assert [budget.take("a") for _ in range(4)] == [True, True, True, False]
    assert budget.take("b")  # another address has its own
    now[0] = 1.9
    assert not budget.take("a")
    now[0] = 2.1
    assert budget.take("a") and not budget.take("a")


def test_new_sessions_of_one_address_are_admitted_at_its_pace():
    now = [0.0]
    budget = turns.NewSessions(clock=lambda: now[0], per_second=20.0)
    assert [budget.pace("a") for _ in range(3)] == pytest.approx([0.0, 0.05, 0.1])  # a burst, spread
    assert budget.pace("b") == 0.0  # another address has its own turns
    now[0] = 1.0
    assert budget.pace("a") == 0.0  # an address that paused waits for nothing


def test_a_script_s_new_sessions_wait_for_their_address_s_pace(space):
    """Through the server: three new sessions of one address take two turns of its pace; a join of a session the
    queue knows waits for none."""
    demo, url = space
    rules = demo._spectral_turns
    budget, rules.new_sessions = rules.new_sessions, turns.NewSessions(per_second=4.0)
    try:
        raw, t0 = load.Visitor(url, "203.0.113.68"), time.monotonic()
        codes = [raw.join("page_load", [""], f"paced-{i}")[0] for i in range(3)]
        assert codes == [200] * 3 and time.monotonic() - t0 >= 0.5
        turn = rules.new_sessions.slots["203.0.113.68"]
        assert raw.join("page_load", [""], "paced-2")[0] == 200
        assert rules.new_sessions.slots["203.0.113.68"] == turn  # a known session took no turn
    finally:
        rules.new_sessions = budget


def test_one_address_holds_at_most_half_of_the_waiting_places():
    class FakeQueue:
        def __init__(self, events):
            self.event_queue_per_concurrency_id = {"x": type("Q", (), {"queue": events})()}
            self.active_jobs = []

    def event(session, address):
        fn = type("Fn", (), {"api_name": None})()
        request = type("R", (), {"headers": {"x-forwarded-for": address}, "client": None})()
        return type("E", (), {"fn": fn, "session_hash": session, "request": request, "alive": True})()

    waiting = [event(f"s{i}", "192.0.2.1") for i in range(turns.OTHER_PER_ADDRESS)]
    rules = turns.Turns(type("B", (), {"_queue": FakeQueue(waiting)})(), hops=1)
    assert rules.refusal(False, "fresh", "192.0.2.1") == turns.ADDRESS_BUSY
    assert rules.refusal(False, "fresh", "192.0.2.2") is None


class Visitor:
    """A Turns stand-in for Reader: the messages sent to a visitor, those it read, and whether its stream closed."""

    def __init__(self) -> None:
        self.sent = self.read = 0
        self.is_closed = False

    def send(self, n: int = 1) -> None:
        self.sent += n

    def backlog(self, session):
        return self.sent - self.read

    def taken(self, session):
        return self.read

    def closed(self, session):
        return self.is_closed


def test_a_slow_reader_loses_frames_not_its_run():
    now, seen = [0.0], Visitor()
    reader = turns.Reader(seen, "slow", clock=lambda: now[0])
    seen.send(4)  # the run's start, a warning and its first frame: the visitor reads one every 4 s
    for second in range(1, int(turns.STALLED_S)):
        now[0] = float(second)
        if second % 4 == 0:
            seen.read += 1
        if reader.ready():
            seen.send()
        assert not reader.gone()  # the run kept ...
    assert reader.dropped > 0  # ... frames dropped meanwhile
    now[0] += turns.STALLED_S + 1
    assert reader.gone()  # a stream that has read nothing for a minute


def test_a_stream_never_opened_or_closed_is_gone():
    now, seen = [0.0], Visitor()
    never = turns.Reader(seen, "never", clock=lambda: now[0])
    seen.send(3)
    assert not never.ready() and not never.gone()
    now[0] = turns.ABANDON_S + 0.5
    assert never.gone()  # not one message read: no stream was opened
    closed = turns.Reader(seen, "closed", clock=lambda: now[0])
    seen.is_closed = True
    assert closed.gone()  # the tab was closed: at once


def test_a_flood_of_fresh_sessions_registers_nothing_past_its_budget_and_evicts_nobody(
    space, tiny_png, tmp_path, monkeypatch
):
    demo, url = space
    monkeypatch.setattr(guards, "REFUSED_DELAY_S", 0.01)  # the refusals' pace: its own test below
    table = demo._queue.pending_messages_per_session
    rules = demo._spectral_turns
    honest = visitor(url, "198.51.100.20", tmp_path)
    try:
        job = honest.submit(image=handle_file(tiny_png), iterations=600, **TINY, api_name="/run")
        assert wait_for(lambda: rules.holds(honest.session_hash, running=True), 60)
        size, max_size = len(table), table.max_size
        table.max_size = size + 5  # a small table: the flood would have evicted the visitor at Gradio's own
        no_refill = turns.NewSessions(clock=lambda: 0.0, per_second=1e9)  # no refill meanwhile, and no pace
        budget, rules.new_sessions = rules.new_sessions, no_refill
        try:
            raw = load.Visitor(url, "203.0.113.66")
            codes = [raw.join("replay", ["denoise_house", "lam1", "", 10], f"flood-{i}")[0] for i in range(150)]
        finally:
            table.max_size, rules.new_sessions = max_size, budget
        # within the address's budget: admitted while the table has room (its replays wait, unread, so their sessions
        # stay busy), then refused as a full server; past the budget refused as such; a refused one registers nothing
        assert codes[:5] == [200] * 5 and set(codes[: turns.NEW_SESSIONS]) <= {200, 503}
        assert set(codes[turns.NEW_SESSIONS :]) == {429}
        assert not any(f"flood-{i}" in table for i, code in enumerate(codes) if code != 200)
        assert honest.session_hash in table and len(table) <= size + 5
        final = job.result(timeout=120)  # the whole run, and its downloads
        assert str(final[6]).startswith(("Done", "Stopped", "Finished")) or final[7], final[6]
        assert final[7] and all(os.path.isfile(f) for f in final[7])
    finally:
        honest.close()


def test_a_join_refused_for_its_budget_is_answered_at_the_budgets_pace(space, monkeypatch):
    """A script past its new sessions waits one refill for each refusal (Retry-After says so), holding no thread;
    beyond REFUSED_HELD waiting at once, a refusal is answered at once."""
    demo, url = space
    rules = demo._spectral_turns
    budget, rules.new_sessions = rules.new_sessions, turns.NewSessions(burst=0, clock=lambda: 0.0)  # none left
    monkeypatch.setattr(guards, "REFUSED_DELAY_S", 0.5)
    try:
        body = {"data": [""], "fn_index": load.App.read(url).fn["page_load"], "session_hash": "script-1"}
        headers = {"X-Forwarded-For": "203.0.113.67"}
        t0 = time.monotonic()
        r = httpx.post(url + "gradio_api/queue/join", json=body, headers=headers, timeout=30)
        waited = time.monotonic() - t0
        assert r.status_code == 429 and r.json()["detail"] == turns.NEW_SESSIONS_FULL
        assert r.headers["retry-after"] == "1" and waited >= 0.5
        monkeypatch.setattr(guards, "REFUSED_HELD", 0)  # as if 256 were waiting: answered at once
        monkeypatch.setattr(guards, "REFUSED_DELAY_S", 600.0)
        r = httpx.post(url + "gradio_api/queue/join", json=body, headers=headers, timeout=30)
        assert r.status_code == 429 and "script-1" not in demo._queue.pending_messages_per_session
    finally:
        rules.new_sessions = budget


@pytest.mark.parametrize("query", ["", "?tab=replays&iteration=810", "?task=inpaint&example=1"])
def test_skipped_outputs_are_sent_as_gradio_sends_them_with_no_component_built(space, query):
    """turns.cheap_skips: the page load's answer is Gradio's, value for value, and a skip builds no component (Gradio
    keeps each one it builds in the session's state)."""
    import asyncio
    import copy

    from gradio.state_holder import SessionState

    demo, _ = space
    fn = next(f for f in demo.fns.values() if f.api_name == "page_load")
    gradios = type(demo).postprocess_data.__get__(demo)
    outputs = list(asyncio.run(fn.fn(query)))
    skipped = [b for v, b in zip(outputs, fn.outputs) if isinstance(v, dict) and v == turns.SKIP]
    ours, theirs = SessionState(demo), SessionState(demo)
    answer = asyncio.run(demo.postprocess_data(fn, copy.deepcopy(outputs), ours))
    assert asyncio.run(gradios(fn, copy.deepcopy(outputs), theirs)) == answer
    assert skipped and all(ours.blocks_config.blocks[b._id] is b for b in skipped)  # the page's own, unbuilt
    assert not any(theirs.blocks_config.blocks[b._id] is b for b in skipped)  # Gradio's: each one built anew


def test_a_message_for_a_session_that_is_gone_is_dropped(space):
    demo, _ = space
    event = type("E", (), {"session_hash": "gone-long-ago", "alive": True, "_id": "x"})()
    demo._queue.send_message(event, type("M", (), {"event_id": None})())  # Gradio's own raised KeyError
    assert event.alive is False


def test_direct_rest_calls_skip_no_queue(space):
    _, url = space
    r = httpx.post(url + "gradio_api/run/replay", json={"data": ["denoise_house", "lam1", "", 10]}, timeout=30)
    assert r.status_code == 404 and r.json() == {"detail": guards.DIRECT_CALL.format(name="replay")}
    deep = httpx.get(url + "gradio_api/deep_link", params={"session_hash": "x"}, timeout=30)
    assert deep.status_code == 404 and deep.json() == {"detail": "this server does not offer /gradio_api/deep_link"}
    client = Client(url, verbose=False, download_files=False)  # the queue's door stays open
    try:
        assert len(client.predict("denoise_house", "lam1", "", 10, api_name="/replay")) == 8
    finally:
        client.close()


def test_closing_a_run_on_the_event_loop_does_not_wait_for_its_step(tiny_png):
    import asyncio

    from demo.session import on_event_loop

    request = parse_request(tiny_png, iterations=5000, compare=False, **TINY)
    lab = LabRun(request)
    stream = lab.stream()
    next(stream)

    async def close() -> float:
        assert on_event_loop()
        t0 = time.perf_counter()
        stream.close()  # as Gradio closes a cancelled event's iterator: on its event loop
        return time.perf_counter() - t0

    seconds = asyncio.run(close())
    assert not on_event_loop()
    assert wait_for(lambda: lab.ended is not None, 30)  # the steps ended by themselves, at their next step
    assert lab.abandoned and seconds < 5


def test_the_runs_clock_and_stop_cover_its_baseline_and_path_measurement(tiny_png, monkeypatch):
    from dataclasses import replace

    import demo.session as session

    slow = session.baseline

    def baseline(task):
        time.sleep(0.5)  # a slow classical baseline (before the bounds: a 16×20000 image)
        return slow(task)

    monkeypatch.setattr(session, "baseline", baseline)
    request = parse_request(tiny_png, iterations=5000, compare=False, **TINY)
    timed = LabRun(request, limits=replace(LIMITS, run_seconds=0.4))
    every = request.configs["controlled"].every
    last = list(timed.stream())[-1]
    assert timed.out_of_time and last.iteration <= every  # its time ran out during the baseline: no step more
    stopped = LabRun(request, stop=lambda: True)  # Stop pressed while the baseline ran
    last = list(stopped.stream())[-1]
    assert stopped.cancelled and last.iteration <= every


def test_a_groups_queue_takes_turns_by_address():
    def event(i, address):
        return type("E", (), {"_id": f"e{i}", "concurrency_id": "replay", "turns_address": address, "request": None})()

    flood = [event(i, "203.0.113.66") for i in range(5)]
    group = type("G", (), {"queue": list(flood)})()
    queue = type("Q", (), {"event_ids_to_events": {}, "event_queue_per_concurrency_id": {"replay": group}})()
    rules = turns.Turns(type("B", (), {"_queue": queue})(), hops=1)

    def join(e):
        queue.event_ids_to_events[e._id] = e
        group.queue.append(e)
        rules.place(e._id, e.turns_address)

    student, second, other = event(10, "198.51.100.1"), event(11, "198.51.100.1"), event(12, "198.51.100.2")
    join(student)
    join(second)
    join(other)
    order = [e._id for e in group.queue]
    # each address's first event, then each one's second, ...: the script's queue does not hold the class back
    assert order == ["e0", "e10", "e12", "e1", "e11", "e2", "e3", "e4"]


def test_a_new_session_builds_no_configs(space):
    from gradio.state_holder import SessionState

    demo, _ = space
    state = SessionState(demo)  # as Gradio makes one for each new visitor
    assert state.config_values == {} and state.blocks_config.config_for_block(0, [], None) == {}
    assert demo.default_config.config_for_block is not state.blocks_config.config_for_block  # the app's own untouched


def slots(running_ids, groups):
    """A queue of fake events: ``running_ids`` (id, address, reads) running, ``groups`` {cid: (limit, running,
    [(id, address, reads, api)])} waiting; the Turns on it, with the readers' streams open."""

    def event(i, address, cid, api):
        fn = type("Fn", (), {"api_name": api, "batch": False})()
        return type("E", (), {"_id": i, "concurrency_id": cid, "turns_address": address, "fn": fn, "session_hash": i})()

    queue = type("Q", (), {"active_jobs": [], "event_queue_per_concurrency_id": {}})()
    rules, readers = turns.Turns(type("B", (), {"_queue": queue})(), hops=1), []
    for cid, (limit, n_running, waiting) in groups.items():
        group = type("G", (), {"concurrency_limit": limit, "current_concurrency": n_running})()
        group.queue = [event(i, a, cid, api) for i, a, _, api in waiting]
        readers += [i for i, _, reads, _ in waiting if reads]
        queue.event_queue_per_concurrency_id[cid] = group
    queue.active_jobs = [[event(i, a, "replay", "replay")] for i, a, _ in running_ids] + [None]
    readers += [i for i, _, reads in running_ids if reads]
    for session in readers:
        rules.streams[session] = 1
    return rules, queue


def started(rules, queue, n=10):
    """The ids of the events ``next_events`` starts, in order, until it starts none (or ``n``)."""
    out = []
    for _ in range(n):
        picked = rules.next_events(lambda: None)
        if picked is None:
            break
        events, _, cid = picked
        queue.event_queue_per_concurrency_id[cid].current_concurrency += 1
        queue.active_jobs.append(events)
        out.append(events[0]._id)
    return out


def test_a_free_slot_goes_to_the_address_with_the_fewest_events_running():
    flood, student = "203.0.113.66", "198.51.100.1"
    running = [(f"f{i}", flood, True) for i in range(3)] + [("s", student, True)]
    waiting = [("e10", flood, True, "replay"), ("e11", flood, True, "replay"), ("e12", student, True, "replay")]
    waiting.append(("e13", "198.51.100.2", True, "replay"))
    rules, queue = slots(running, {"replay": (6, 4, waiting)})
    # the address running none goes first, then the student's (1 running) before the flood's (3); two places free
    assert started(rules, queue) == ["e13", "e12"]
    live = [("e20", flood, True, "run"), ("e21", student, True, "run")]
    ui = [("e30", flood, True, "ui"), ("e31", student, True, "ui")]
    rules, queue = slots([], {"run": (1, 0, live), "ui": (1, 1, ui)})
    assert started(rules, queue) == ["e20"]  # live runs keep their turns; a full group starts nothing


def test_events_nobody_reads_wait_for_the_readers_and_run_one_at_a_time():
    """A script that joins with fresh sessions and never opens a stream: its replays start only when no student's
    waits in the group or runs anywhere but in a live run, UNREAD_RUNNING at a time, whatever their queue order."""
    flood, student = "203.0.113.66", "198.51.100.1"
    waiting = [(f"f{i}", flood, False, "replay") for i in range(5)] + [("s1", student, True, "replay")]
    waiting += [("s2", "198.51.100.2", True, "replay")]
    rules, queue = slots([], {"replay": (8, 0, waiting), "other": (8, 0, [])})
    group = queue.event_queue_per_concurrency_id["replay"]

    def end(i):
        queue.active_jobs.pop(i)
        group.current_concurrency -= 1

    assert started(rules, queue) == ["s1", "s2"]  # seven places free: none for the script while students' run
    end(-1)  # s2 ends; s1 still runs
    assert started(rules, queue) == []
    queue.active_jobs[-1][0].concurrency_id = "other"  # s1 in another group (as a Play): it holds them too
    group.current_concurrency -= 1
    assert started(rules, queue) == []
    queue.active_jobs[-1][0].fn.api_name = "run"  # a live run: minutes long, it does not
    assert started(rules, queue) == ["f0", "f1"][: turns.UNREAD_RUNNING]
    end(-1)
    assert started(rules, queue) == ["f1"]
    rules.streams["f2"] = 1  # a stream opened for one of them: a reader now
    assert started(rules, queue) == ["f2"]


def test_a_stream_marks_its_session_as_a_reader_while_it_is_open():
    from demo.guards import stream_session

    rules = turns.Turns(type("B", (), {"_queue": None})(), hops=1)
    scope = {"method": "GET", "path": "/gradio_api/queue/data", "query_string": b"session_hash=abc&x=1"}
    assert stream_session(scope) == "abc"
    assert stream_session({**scope, "method": "POST"}) is None
    assert stream_session({**scope, "path": "/gradio_api/queue/join"}) is None
    with rules.reading("abc"):
        with rules.reading("abc"):
            assert rules.streams == {"abc": 2}
        assert rules.reads(type("E", (), {"session_hash": "abc"})())
    assert rules.streams == {}
    with rules.reading(None):
        assert rules.streams == {}


def test_queue_positions_go_to_live_runs_only(space):
    """Gradio sends every waiting event its queue position after each start and join; only a live run's are sent."""
    import asyncio

    from gradio.server_messages import EstimationMessage, ProcessStartsMessage

    demo, _ = space
    sessions, sent = demo._queue.pending_messages_per_session, []
    for name, api in (("replay-viewer", "replay"), ("live-visitor", "run")):
        sessions[name] = asyncio.Queue()
        fn = type("F", (), {"api_name": api})()
        event = type("E", (), {"session_hash": name, "alive": True, "_id": name, "fn": fn})()
        for message in (EstimationMessage(queue_size=3, rank=1), ProcessStartsMessage()):
            demo._queue.send_message(event, message)
        messages = sessions.pop(name)
        sent.append([messages.get_nowait().msg for _ in range(messages.qsize())])
    assert sent == [["process_starts"], ["estimation", "process_starts"]]


def test_the_queue_does_not_summarise_every_event_for_a_monitoring_page(space):
    """Gradio rebuilds a pandas summary of up to 10,000 finished events after each event unless told otherwise."""
    demo, _ = space
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY >= 10_000


def test_a_class_opening_the_page_gets_one_copy_of_it_per_name(space, monkeypatch):
    """The page and its config are the same bytes for every visitor reaching the server by the same name: Gradio makes
    them once per PAGE_CACHE_S (a deep copy of a 250 KB config each), not once per visitor; another name, its own."""
    from gradio import routes

    _, url = space
    made = []
    real = routes.utils.safe_deepcopy
    monkeypatch.setattr(routes.utils, "safe_deepcopy", lambda x: made.append(1) or real(x))
    host = {"host": "class.example"}
    first = [httpx.get(url + p, headers=host, timeout=30) for p in ("", "config")]
    n = len(made)
    again = [httpx.get(url + p, headers={**host, "user-agent": "another student"}, timeout=30) for p in ("", "config")]
    assert n > 0 and len(made) == n  # kept: made once
    assert [r.content for r in again] == [r.content for r in first] and all(r.status_code == 200 for r in again)
    other = httpx.get(url + "config", headers={"host": "other.example"}, timeout=30)
    assert len(made) > n and other.json()["root"] == "http://other.example"  # another name: its own root
    assert first[1].json()["root"] == "http://class.example"
