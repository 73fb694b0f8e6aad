"""Replays of the paper's experiments: the committed files, the builder, the lesson events, the replay endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from benchmarks import make_replays as builder
from demo import experiments as tab
from dip_core import lesson
from dip_core.replay import EXPERIMENTS, LANES, MAX_FRAMES, Replays
from dip_core.tasks import TASKS

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
COMMITTED = tab.ROOT
#: docs/bad-input.md's rows for replays (tested below)
BAD_REPLAY_ROWS = ("replay of an unknown experiment or lane", "replay iteration outside the run (e.g. 99999)")


# ---------------------------------------------------------------- the committed replays


@pytest.fixture(scope="module")
def committed() -> Replays:
    return Replays(COMMITTED)


def test_committed_replays_cover_the_issue_and_match_their_manifest(committed):
    m = committed.manifest
    assert [e["name"] for e in m["experiments"]] == [e.name for e in EXPERIMENTS]
    assert {e["task"] for e in m["experiments"]} == {"denoise", "jpeg", "inpaint", "sr", "enhance"}
    scale = m["scale"]
    assert (
        m["command"].startswith(("python -m benchmarks replays", "python -m benchmarks.replays"))
        and scale["iterations"] > 0
    )
    for exp in m["experiments"]:
        assert [lane["name"] for lane in exp["lanes"]] == [lane.name for lane in LANES]
        assert committed.image(exp["name"], "observed") is not None
        assert (committed.image(exp["name"], "clean") is None) == (exp["task"] == "enhance")
        for lane in exp["lanes"]:
            run = committed.run(exp["name"], lane["name"])
            c = run.curves
            n = len(c["iter"])
            assert all(len(c[k]) == n for k in ("psnr", "ssim", "loss", "ratio", "fbc"))
            assert c["iter"] == sorted(c["iter"]) and c["iter"][-1] == scale["iterations"]
            assert all(len(b) == 5 for b in c["fbc"])
            assert 2 <= len(run.frame_iters) <= MAX_FRAMES and run.frame_iters[-1] == scale["iterations"]
            assert run.spectra.shape[0] == len(run.frame_iters) and run.spectra.dtype == np.uint8
            files = sorted(p.name for p in run.folder.glob("*.webp"))
            assert files == [f"{t:05d}.webp" for t in run.frame_iters]
            with Image.open(run.frame_path(run.frame_iters[-1])) as im:
                assert max(im.size) <= 256
            if exp["task"] != "enhance":
                assert all(p is not None for p in c["psnr"])


def test_the_auto_lane_is_what_auto_ran_and_marks_the_bound_moving(committed):
    """Issue 35: every experiment has a ``lamauto`` lane. Where auto ran a fixed λ at this scale, its lane is that
    lane's run (``same_as``, named in its label); the learned bounds (JPEG) ran for real, on a machine the entry
    names, and their move is a lesson, drawn dotted on the curves."""
    learned = set()
    for exp in committed.manifest["experiments"]:
        entry = next(x for x in exp["lanes"] if x["name"] == "lamauto")
        run = committed.run(exp["name"], "lamauto")
        if "same_as" in entry:
            same = next(x for x in exp["lanes"] if x["name"] == entry["same_as"])
            assert same["upsample"] == "bilinear" and entry["label"] == f"λ auto: λ = {same['lipschitz']:g}"
            assert run.curves == committed.run(exp["name"], entry["same_as"]).curves and "bound" not in run.curves
            continue
        learned.add(exp["task"])
        assert entry["label"] == "λ auto: learned from λ = 1.4" and entry["machine"] and entry["date"]
        assert f"{entry['label']}: added on {entry['machine']}, {entry['date']}" in tab.scale_note()  # the tab says
        bound = run.curves["bound"]
        assert len(bound) == len(run.curves["iter"]) and all(0 < b < 10 for b in bound)
        (event,) = [e for e in lesson.lane_events(run.curves, "lamauto", entry["label"]) if e.kind == "bound"]
        assert abs(bound[run.curves["iter"].index(event.iter)] / bound[0] - 1) >= lesson.BOUND_MOVE
        figure = tab.frame(exp["name"], "lamauto", "vanilla", event.iter, None)
        assert any("λ (learned" in str(x) for x in figure), "the learned bound's path is not on the curves"
    assert learned == {name for name, spec in TASKS.items() if spec.auto.rule == "learned"}


def test_committed_replays_stay_small():
    size = sum(f.stat().st_size for f in COMMITTED.rglob("*") if f.is_file())
    assert size <= 25e6, f"replays take {size / 1e6:.1f} MB"


def test_the_default_replay_shows_the_three_lessons(committed):
    """On the default pair the lesson finds its events: low frequencies first, a peak, fitting the noise (vanilla)."""
    kinds = {(e.kind, e.lane) for e in tab.events_of(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE, tab.DEFAULT_OTHER)}
    assert {("low_first", "vanilla"), ("best", "vanilla"), ("noise", "vanilla"), ("best", tab.DEFAULT_LANE)} <= kinds


# ---------------------------------------------------------------- the builder (smoke scale)


def test_the_builder_writes_a_replay_the_tab_plays(tmp_path, house):
    data = tmp_path / "data"
    for exp in (EXPERIMENTS[0], next(e for e in EXPERIMENTS if e.mask)):
        (data / exp.image).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((house * 255).astype(np.uint8)).save(data / exp.image)
        if exp.mask:
            mask = np.full(house.shape[:2], 255, np.uint8)
            mask[100:140, 80:160] = 0
            (data / exp.mask).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(data / exp.mask)
    out = tmp_path / "replays"
    names = [EXPERIMENTS[0].name, next(e for e in EXPERIMENTS if e.mask).name]
    builder.main(
        ["--data", str(data), "--out", str(out), "--smoke", "--work", str(tmp_path / "work"), "--experiments", *names]
    )
    r = Replays(out)
    assert [e["name"] for e in r.manifest["experiments"]] == names
    assert r.manifest["command"].startswith("python -m benchmarks replays --data DATA --out ")  # the app shows it:
    assert str(data) not in r.manifest["command"]  # never this machine's data folder
    lanes = [lane["name"] for lane in r.lanes(names[1])]
    run = r.run(names[1], lanes[1])
    assert run.frame_iters[0] == 1 and run.frame_iters[-1] == builder.SCALES["smoke"]["iterations"]
    with Image.open(r.image(names[1], "observed")) as im:
        assert max(im.size) == builder.SCALES["smoke"]["max_side"]
    # resumable: a second call finds every run done and rebuilds the same folder
    before = json.loads((out / names[0] / lanes[0] / "curves.json").read_text())
    shutil.rmtree(out)
    builder.main(
        ["--data", str(data), "--out", str(out), "--smoke", "--work", str(tmp_path / "work"), "--experiments", *names]
    )
    assert json.loads((out / names[0] / lanes[0] / "curves.json").read_text()) == before
    # a lane added to the folder (issue 35's auto): at the folder's scale, the other lanes and the scale kept
    manifest = r.manifest
    builder.main(["--data", str(data), "--out", str(out), "--work", str(tmp_path / "work"), "--lanes", "lamauto"])
    added = Replays(out)
    assert added.manifest["scale"] == manifest["scale"] and added.manifest["command"] == manifest["command"]
    for exp in added.manifest["experiments"]:
        entry = exp["lanes"][-1]
        assert [x["name"] for x in exp["lanes"]] == [*lanes, "lamauto"] and entry["label"].startswith("λ auto: ")
        assert entry.get("same_as", "lamauto") in [*lanes, "lamauto"]  # a run of its own where none is here
        run = added.run(exp["name"], "lamauto")
        assert run.curves["iter"][-1] == builder.SCALES["smoke"]["iterations"]
    assert json.loads((out / names[0] / lanes[0] / "curves.json").read_text()) == before


# ---------------------------------------------------------------- lesson events on synthetic curves


def synthetic(n: int = 100, peak_at: int = 30, decay: float = 4.0, noise_rise: float = 0.5) -> dict:
    """Curves with a known shape: band k reaches its plateau later for higher k; PSNR rises to 30 dB at
    ``peak_at`` then falls by ``decay`` dB by the end, while band 5 rises by ``noise_rise`` after the peak."""
    t = np.arange(1, n + 1) * 10
    x = np.arange(n)
    tail = max(1, n - 1 - peak_at)
    psnr = np.where(x <= peak_at, 20 + 10 * x / peak_at, 30 - decay * (x - peak_at) / tail)
    bands = []
    for k in range(5):
        base = 1 - np.exp(-x / (2 + 8 * k**2))
        if k == 4:
            base = 0.2 * (1 - np.exp(-x / 10)) + noise_rise * np.clip((x - peak_at) / tail, 0, 1)
        bands.append(base)
    return {"iter": t.tolist(), "psnr": psnr.tolist(), "fbc": np.array(bands).T.tolist()}


def test_lesson_events_are_found_where_the_curves_have_them():
    c = synthetic()
    events = {e.kind: e for e in lesson.lane_events(c, "vanilla", "vanilla DIP")}
    assert set(events) == {"low_first", "best", "noise"}
    assert events["low_first"].iter < events["best"].iter < events["noise"].iter
    assert abs(events["best"].iter - 310) <= 20  # the peak, within the smoothing window
    i = c["iter"].index(events["low_first"].iter)
    assert c["fbc"][i][0] >= lesson.LOW_FITTED and c["fbc"][i][4] < lesson.HIGH_UNFITTED
    assert c["fbc"][i - 1][0] < lesson.LOW_FITTED  # the first such snapshot


def test_lesson_events_are_absent_where_the_curves_lack_them():
    flat = synthetic(decay=0.2, noise_rise=0.0)  # no decay: no "fits the noise"
    assert {e.kind for e in lesson.lane_events(flat, "a", "a")} == {"low_first", "best"}
    together = dict(synthetic(), fbc=[[0.5] * 5 for _ in range(100)])  # every band at once: no "low first"
    assert "low_first" not in {e.kind for e in lesson.lane_events(together, "a", "a")}
    unknown = dict(synthetic(), psnr=[None] * 100)  # no clean image: no PSNR events
    assert {e.kind for e in lesson.lane_events(unknown, "a", "a")} == {"low_first"}
    rising = synthetic(peak_at=99, decay=0)  # still rising: a live run has no peak yet
    assert lesson.peak(rising, done=False) is None and lesson.peak(rising, done=True) is not None


def test_the_bound_event_marks_where_learned_bounds_first_moved():
    c = synthetic()
    n = len(c["iter"])
    tightening = dict(c, bound=[1.4 * (1 - 0.3 * i / n) for i in range(n)])  # 10 % lower at a third of the run
    (e,) = lesson.bound_event(tightening, "auto", "λ auto")
    assert e.kind == "bound" and e.title == "The bound moves" and "tightened from λ 1.40" in e.caption
    assert e.iter == c["iter"][next(i for i in range(n) if 0.3 * i / n >= lesson.BOUND_MOVE - 1e-12)]
    assert (
        "end at" in e.caption
        and "end at" not in lesson.bound_event(tightening, "auto", "λ auto", done=False)[0].caption
    )
    loosening = dict(c, bound=[1.0 + 0.01 * i for i in range(n)])
    assert "loosened" in lesson.bound_event(loosening, "a", "a")[0].caption
    assert lesson.bound_event(dict(c, bound=[1.4] * n), "a", "a") == []  # a fixed λ never moves
    assert lesson.bound_event(dict(c, bound=[1.4 * (1 - 0.05 * i / n) for i in range(n)]), "a", "a") == []
    assert lesson.bound_event(c, "a", "a") == [] and lesson.bound_event(dict(c, bound=[None] * n), "a", "a") == []
    assert "bound" in {e.kind for e in lesson.lesson({"auto": tightening}, {"auto": "λ auto"})}


def test_the_control_event_compares_the_two_drops():
    vanilla, held, decayed = synthetic(decay=4), synthetic(decay=0.5), synthetic(decay=3)
    labels = {"vanilla": "vanilla DIP", "c": "λ = 1"}
    e = lesson.control_event(vanilla, held, "λ = 1", "c")
    assert e is not None and e.kind == "control" and e.iter == vanilla["iter"][-1]
    lost = [float(v) for v in re.findall(r"lost ([\d.]+) dB", e.caption)]
    assert 3.5 <= lost[0] <= 4.0 and 0.2 <= lost[1] <= 0.5  # 4 and 0.5 dB, less what the smoothing's end window takes
    assert lesson.control_event(vanilla, decayed, "λ = 1", "c") is None  # lost more than half of vanilla's drop
    assert lesson.control_event(synthetic(decay=0.5), held, "λ = 1", "c") is None  # vanilla did not decay
    kinds = [e.kind for e in lesson.lesson({"vanilla": vanilla, "c": held}, labels)]
    assert kinds.count("control") == 1 and kinds[-1] == "control"
    assert "control" not in [e.kind for e in lesson.lesson({"vanilla": vanilla, "c": held}, labels, done=False)]


# ---------------------------------------------------------------- the tab's functions and the endpoint


async def played(*args) -> list[tuple]:
    return [step async for step in tab.play(*args)]


def test_scrubbing_moves_images_and_figures_with_the_iteration(committed):
    exp, lane = tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE
    frames = committed.run(exp, lane).frame_iters
    early, late = tab.show_replay(exp, lane, "vanilla", frames[1]), tab.show_replay(exp, lane, "vanilla", None)
    assert early["lane_image"]["value"].endswith(f"{frames[1]:05d}.webp")
    assert late["lane_image"]["value"].endswith(f"{frames[-1]:05d}.webp")
    assert f"Iteration {frames[1]}" in early["readout"]
    cursor = [s for s in early["curves"].layout.shapes if s.line.color == "#111"]
    assert {s.x0 for s in cursor} == {frames[1]}
    alone = tab.show_replay(exp, lane, "", None)
    assert alone["other_image"]["visible"] is False
    steps = asyncio.run(played(exp, lane, "vanilla", frames[-3]))
    assert [s[0] for s in steps] == frames[-3:]
    n, it, *_ = tab.next_lesson(exp, lane, "vanilla", None)
    events = tab.events_of(exp, lane, "vanilla")
    assert n == 0 and it == events[0].iter
    assert tab.next_lesson(exp, lane, "vanilla", len(events) - 1)[0] == 0  # after the last, back to the first


def test_a_late_player_skips_frames_to_keep_its_pace():
    frames = list(range(0, 1000, 10))
    assert tab.play_frames(frames, 0, 0.0, -1) == 0
    assert tab.play_frames(frames, 0, tab.PLAY_SECONDS * 1.01, 0) == 1  # on time: the next frame
    assert tab.play_frames(frames, 0, tab.PLAY_SECONDS * 5.5, 1) == 5  # its turn came late: frames 2-4 skipped
    assert tab.play_frames(frames, 10, 0.0, 40) == 41  # never back, never the same frame twice
    assert tab.play_frames(frames, 0, 1e6, 3) == len(frames) - 1  # never past the end


def test_all_players_share_one_budget_of_frames():
    pacer = tab.Pacer(per_second=10)
    delays = [pacer.delay(100.0) for _ in range(5)]  # five players asking at once
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert pacer.delay(200.0) == 0.0  # a quiet server: at once


def test_a_player_waits_while_a_view_draws_and_never_longer_than_its_bound():
    async def check() -> None:
        views = tab.Views()
        await asyncio.wait_for(views.wait(longest=60.0), 5.0)  # nobody drawing: at once
        views.drawing = 1
        waiting = asyncio.ensure_future(views.wait(longest=60.0))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # a scrub is drawing: the player's frame waits
        views.drawing = 0
        await asyncio.wait_for(waiting, 5.0)
        views.drawing = 1
        await asyncio.wait_for(views.wait(longest=0.05), 5.0)  # bounded: a stream of scrubs never stops Play

    asyncio.run(check())


def test_play_sends_only_what_changes_as_plain_values():
    exp, lane = tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE
    frames = tab.replays().run(exp, lane).frame_iters
    steps = asyncio.run(played(exp, lane, "vanilla", frames[-2]))
    assert [len(s) for s in steps] == [1 + len(tab.PLAY_OUTPUTS)] * 2
    assert not any(isinstance(v, dict) for s in steps for v in s)  # no update: Gradio builds a component per update
    assert set(tab.TAB_OUTPUTS) - set(tab.PLAY_OUTPUTS) == {"observed", "clean", "lesson"}


def test_a_class_pressing_play_holds_no_thread_while_it_waits(monkeypatch):
    exp, lane = tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE
    frames = tab.replays().run(exp, lane).frame_iters
    monkeypatch.setattr(tab, "PLAY_SECONDS", 0.05)
    monkeypatch.setattr(tab, "PACER", tab.Pacer(per_second=400))

    async def class_of(students: int) -> tuple[list[list[int]], int, tuple]:
        before = threading.active_count()
        players = [asyncio.create_task(played(exp, lane, "vanilla", frames[-6])) for _ in range(students)]
        peak = 0
        while not all(p.done() for p in players):
            peak = max(peak, threading.active_count() - before)
            await asyncio.sleep(0.01)
        scrub = await tab.on_loop(tab.replay)(exp, lane, "vanilla", frames[3])
        return [[step[0] for step in p.result()] for p in players], peak, scrub

    shown, extra_threads, scrub = asyncio.run(class_of(40))
    assert extra_threads <= tab.PLAY_THREADS + tab.VIEW_THREADS  # not one thread per player
    for seen in shown:
        assert seen == sorted(set(seen)) and seen[-1] == frames[-1] and set(seen) <= set(frames[-6:])
    assert scrub[1]["value"].endswith(f"{frames[3]:05d}.webp")


def test_kept_frames_are_handed_out_as_copies():
    it = tab.replays().run(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE).frame_iters[4]
    first = tab.replay(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE, "vanilla", it)
    first[1].pop("value")  # as Gradio does while sending an update
    again = tab.replay(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE, "vanilla", it)
    assert again[1]["value"].endswith(f"{it:05d}.webp")
    assert json.loads(again[4].plot)["data"]  # the figures kept as the JSON gr.Plot sends


@pytest.fixture(scope="module")
def app_url():
    from app import make_app
    from demo.ui import launch_options

    demo = make_app()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    yield url
    demo.close()


def test_the_replay_endpoint_through_gradio_client(app_url, tmp_path):
    client = Client(app_url, verbose=False, download_files=str(tmp_path))
    try:
        default = client.predict(api_name="/replay")
        assert len(default) == len(tab.REPLAY_OUTPUTS)
        out = dict(zip(tab.REPLAY_OUTPUTS, default))
        lane = tab.labels(tab.DEFAULT_EXPERIMENT)[tab.DEFAULT_LANE]
        assert re.fullmatch(
            rf"Controlled DIP \({re.escape(lane)}\) · PSNR \d+\.\d\d dB at iteration {tab.last_iteration()}",
            out["lane_image"]["label"],
        )  # the lane, its λ, and its PSNR at the frame shown
        with Image.open(out["lane_image"]["value"]) as a, Image.open(out["clean"]) as b:
            assert a.size == b.size  # images the client downloaded (the lanes' with their labels)
        traces = json.loads(out["curves"]["plot"])["data"]
        names = tab.labels(tab.DEFAULT_EXPERIMENT)
        shown = {names[tab.DEFAULT_OTHER].split(" (")[0], names[tab.DEFAULT_LANE].split(" (")[0]}
        assert shown <= {t.get("name") for t in traces}  # the default pair's PSNR curves
        last = tab.last_iteration()
        mid = client.predict("denoise_peppers", "lam2", "", last // 2, api_name="/replay")
        assert f"Iteration {last // 2}" in dict(zip(tab.REPLAY_OUTPUTS, mid))["readout"]
        assert dict(zip(tab.REPLAY_OUTPUTS, mid))["other_image"]["visible"] is False  # no second lane
        # docs/bad-input.md, BAD_REPLAY_ROWS: one line each
        with pytest.raises(Exception, match=r"^lane must be one of .*, got 'lam9'$"):
            client.predict("denoise_house", "lam9", "", 100, api_name="/replay")
        with pytest.raises(Exception, match=rf"^iteration must be a number between 0 and {last}, got 99999$"):
            client.predict("denoise_house", "vanilla", "", 99999, api_name="/replay")
    finally:
        client.close()


def test_bad_replay_requests_in_python():
    with pytest.raises(gr.Error, match=r"unknown experiment 'x'; choose one of denoise_house"):
        tab.show_replay("x")
    with pytest.raises(gr.Error, match=r"unknown lane 'lam9'; choose one of vanilla"):
        tab.show_replay(tab.DEFAULT_EXPERIMENT, "lam9")
    frames = tab.replays().run(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE).frame_iters
    assert tab.show_replay(iteration=99999)["lane_image"]["value"].endswith(f"{frames[-1]:05d}.webp")
    assert tab.show_replay(iteration=-5)["lane_image"]["value"].endswith(f"{frames[0]:05d}.webp")
