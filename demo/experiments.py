"""The "Paper experiments" tab: precomputed runs (assets/replays, built by ``python -m benchmarks replays``)
played back with no computation but plotting: images, curves, FBC bands and spectrum follow the iteration.

A class opens this tab at once, so its events hold no thread while they wait: they are coroutines that draw a frame
in one of a few threads of their own (``drawn``), drawn frames are kept (``frame``: forty students playing the
default pair draw each frame once), and Play sleeps on the event loop, with every player's frames drawn from one
shared budget (``Pacer``): a crowd pressing Play sees fewer frames, never a slower server."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import gradio as gr

from dip_core.lesson import Event, lesson
from dip_core.replay import LANES as OWN_LANES
from dip_core.replay import Replays, Run

from . import plots
from .examples import ASSETS

ROOT = Path(os.environ.get("SPECTRAL_BIAS_LAB_REPLAYS", ASSETS / "replays"))  # another folder: e.g. a GPU build
DEFAULT_EXPERIMENT = "denoise_house"
#: The default pair: vanilla DIP against the control that holds best at this scale (docs/app.md, Paper experiments)
DEFAULT_LANE, DEFAULT_OTHER = "lam1", "vanilla"
PLAY_SECONDS = 0.35  # between frames while playing
#: Frames per second drawn for all players together: a crowd pressing Play shares them (each player then skips
#: frames to keep its pace), so Play never takes more than a small part of the server.
PLAY_FRAMES_PER_S = 12.0
#: The longest a player waits for its next frame while views are drawing (then it draws, skipping frames to keep pace)
PLAY_YIELD_S = 1.0
#: Threads drawing replay frames: scrubs and lessons (VIEW), Play (PLAY); never Gradio's shared pool.
VIEW_THREADS, PLAY_THREADS = 2, 1
#: Replay events running at once: views (scrubs, lessons, experiment changes) and players. Each is a coroutine holding
#: no thread. Views are few, so that the others wait in the queue, where they take turns by address (demo/turns.py:
#: a script's hundred joins do not run ahead of a student's scrub); 4, 8, 16 and 64 gave a p95 of 5.2, 2.4-3.0, 3.1
#: and 4.8 s in the classroom test. A Play runs for a minute, paced by the shared frame budget: a class's all at once.
VIEW_EVENTS, PLAY_EVENTS = 8, 64
#: Drawn frames kept, their figures as JSON (about 0.1 MB each): more than one whole replay (151 frames).
FRAME_CACHE = 192
#: The tab's outputs by name, in the order the ``replay`` endpoint returns them
REPLAY_OUTPUTS = ("observed", "lane_image", "other_image", "clean", "curves", "spectrum", "readout", "lesson")
#: ... then the captions under the two lanes' images (lane, λ / σ, PSNR at the frame). They are buttons, whose values
#: API clients do not receive: scrubbing, Play and the lessons send plain values and these, never update dicts,
#: which cost Gradio a component and its config (JSON schema included) per image per answer.
CAPTIONS = ("other_caption", "lane_caption")
TAB_OUTPUTS = REPLAY_OUTPUTS + CAPTIONS
#: What Play changes, frame by frame: not the observation, the clean image or the lesson (Play's outputs are these
#: alone: a gr.skip() would cost Gradio a new component per output per frame)
PLAY_OUTPUTS = tuple(k for k in TAB_OUTPUTS if k not in ("observed", "clean", "lesson"))
#: The images, and the two lanes' (the ones whose labels change with the pair of lanes)
IMAGES, LANES = ("observed", "lane_image", "other_image", "clean"), ("lane_image", "other_image")


@functools.cache
def replays(root: str = str(ROOT)) -> Replays | None:
    """The replay folder (None when it is missing: the tab then says how to build it)."""
    return Replays(root) if (Path(root) / "manifest.json").is_file() else None


def experiment_choices() -> list[tuple[str, str]]:
    r = replays()
    return [] if r is None else [(e["label"], e["name"]) for e in r.manifest["experiments"]]


def lane_choices(experiment: str = DEFAULT_EXPERIMENT, none: bool = False) -> list[tuple[str, str]]:
    """The lanes by their own labels, the same for every experiment ("λ auto": its captions say what it ran)."""
    r, own = replays(), {lane.name: lane.label for lane in OWN_LANES}
    lanes = [] if r is None else [(own.get(x["name"], x["label"]), x["name"]) for x in r.lanes(experiment)]
    return ([("none", "")] if none else []) + lanes


def scale_note() -> str:
    """What the replays are: their scale, machine and the command that rebuilt them (shown on the tab)."""
    r = replays()
    if r is None:
        return f"No replays in {ROOT}: build them with `python -m benchmarks replays --data DATA --out {ROOT}`."
    s = r.manifest["scale"]
    scale = "the paper's scale" if s["preset"] == "cuda" else "this CPU demo's scale, not the paper's"
    return (
        f"Precomputed at {scale}: images at most {s['max_side']} px, network width {s['width']}, "
        f"Adam lr {s['lr']:g}, {s['iterations']} steps, seed {s['seed']} ({s['device']}, {s['machine']}, "
        f"{s['date']}). The paper: 512 px, width 128, 10,000 steps. Rebuilt by: `{r.manifest['command']}`"
        + "".join(
            f". {e['label']}, {x['label']}: added on {x['machine']}, {x['date']} (`--lanes {x['name']}`)"
            for e in r.manifest["experiments"]
            for x in e["lanes"]
            if "machine" in x
        )
    )


@dataclass
class ReplayTrack:
    """A replayed run as plots.curves_dict reads a live one (name picks the colour; short names it, ``lane_short``)."""

    name: str
    short: str
    run: Run
    last: None = None  # no live snapshot: the best and the stop are lesson events here

    def column(self, key: str) -> list:
        return list(self.run.curves[key])


def check(experiment: str, lane: str, other: str) -> tuple[Replays, Run, Run | None]:
    """The replay's runs, else a one-line gr.Error naming the known values."""
    r = replays()
    if r is None:
        raise gr.Error(scale_note(), print_exception=False)
    if experiment not in r.experiments:
        raise gr.Error(
            f"unknown experiment {experiment!r}; choose one of {', '.join(r.experiments)}", print_exception=False
        )
    names = [lane["name"] for lane in r.lanes(experiment)]
    for value, empty_ok in ((lane, False), (other, True)):
        if not (value in names or (empty_ok and not value)):
            raise gr.Error(f"unknown lane {value!r}; choose one of {', '.join(names)}", print_exception=False)
    return r, r.run(experiment, lane), r.run(experiment, other) if other and other != lane else None


def labels(experiment: str) -> dict[str, str]:
    r = replays()
    return {lane["name"]: lane["label"] for lane in r.lanes(experiment)}


@functools.cache  # every pair's: a few events each
def events_of(experiment: str, lane: str, other: str) -> tuple[Event, ...]:
    """The lesson events of the lane pair, from their curves (computed once per pair)."""
    r, a, b = check(experiment, lane, other)
    curves = {lane: a.curves} if b is None else {other: b.curves, lane: a.curves}
    return tuple(lesson(curves, labels(experiment)))


def tracks(experiment: str, lane: str, other: str) -> list[ReplayTrack]:
    r, a, b = check(experiment, lane, other)
    names = labels(experiment)
    out = []
    for run, n in ((b, other), (a, lane)):
        if run is not None:
            color = "vanilla" if n == "vanilla" else "other" if out and out[0].name == "controlled" else "controlled"
            out.append(ReplayTrack(color, lane_short(n, names[n]), run))
    return out


def lesson_text(events: tuple[Event, ...], current: int | None) -> str:
    """The numbered lessons of the shown pair (the current one marked), as markdown."""
    if not events:
        return "No lesson events in these curves (e.g. no PSNR: the clean image is unknown for enhancement)."
    lines = [
        "**What the curves show** (the numbered marks on the plots; *Next lesson* or a click on one above walks "
        "through them):",
        "",
    ]
    for n, e in enumerate(events, start=1):
        text = f"{plots.event_mark(n)} **{e.title}**: {e.caption}"
        lines.append(f"- ▶ <mark>{text}</mark>" if current == n - 1 else f"- {text}")
    return "\n".join(lines)


def readout(experiment: str, lane: str, other: str, iteration: int) -> str:
    """PSNR / SSIM and the five FBC bands of each shown lane at the iteration."""
    r, a, b = check(experiment, lane, other)
    names = labels(experiment)
    rows = [f"**Iteration {iteration}**"]
    for run, n in ((b, other), (a, lane)):
        if run is None:
            continue
        psnr, ssim, fbc = run.value("psnr", iteration), run.value("ssim", iteration), run.value("fbc", iteration)
        quality = "" if psnr is None else f"PSNR {psnr:.2f} dB, SSIM {ssim:.3f}; "
        bands = " ".join(f"{v:.2f}" for v in fbc)
        rows.append(f"{names[n]}: {quality}FBC bands 1-5 {bands}")
    return "  \n".join(rows)


def lane_short(lane: str, label: str) -> str:
    """A lane as the curves and spectra name it: "vanilla DIP" (its λ = 0 goes without saying), else its label."""
    return "vanilla DIP" if lane == "vanilla" else label


def lane_title(label: str) -> str:
    """A lane as its image names it: "Vanilla DIP (λ = 0)", "Controlled DIP (λ = 1.8, Gaussian σ = 0.5)"."""
    if label.lower().startswith("vanilla"):
        return label[0].upper() + label[1:]
    return f"Controlled DIP ({label})"


def image_label(run: Run, label: str, iteration: int) -> str:
    """What a lane's image is: the lane, its λ / σ, and its PSNR at the frame shown (the loss without a clean
    image): "Controlled DIP (λ = 1) · PSNR 28.54 dB at iteration 1200"."""
    it = run.frame_at(iteration)
    psnr = run.value("psnr", it)
    quality = f"PSNR {psnr:.2f} dB" if psnr is not None else f"loss {run.value('loss', it):.2e}"
    return f"{lane_title(label)} · {quality} at iteration {it}"


def last_iteration(experiment: str = DEFAULT_EXPERIMENT, lane: str = DEFAULT_LANE) -> int:
    r = replays()
    return 0 if r is None else r.run(experiment, lane).frame_iters[-1]


@functools.lru_cache(maxsize=64)
def curves_of(experiment: str, lane: str, other: str) -> dict:
    """The pair's curves figure (plots.curves_dict) without a cursor, made once: read-only, shared by its frames."""
    r, a, _ = check(experiment, lane, other)
    exp = r.experiments[experiment]
    has_clean = r.image(experiment, "clean") is not None
    return plots.curves_dict(
        tracks(experiment, lane, other),
        a.frame_iters[-1],
        has_clean,
        baseline_psnr=exp["baseline"]["psnr"],
        events=events_of(experiment, lane, other),
        clean_bands=False,
    )


def show_replay(
    experiment: str = DEFAULT_EXPERIMENT,
    lane: str = DEFAULT_LANE,
    other: str = DEFAULT_OTHER,
    iteration: float | None = None,
    current: int | None = None,
    figure: Callable[[dict], Any] = plots.as_figure,
    labelled: tuple[str, ...] = IMAGES,
) -> dict:
    """Everything the tab shows at one iteration of a lane (and optionally a second lane), by name (TAB_OUTPUTS); its
    plots are ``figure`` of plots' figure dicts (plotly figures, or ``plots.plot_data``'s JSON). The ``labelled``
    images are update dicts with their labels and visibility (all four for a new experiment, the lanes' for a new pair
    and the ``replay`` endpoint); the others plain values (the captions say what changed)."""
    r, a, b = check(experiment, lane, other)
    it = a.frame_iters[-1] if iteration is None else int(iteration)
    events = events_of(experiment, lane, other)
    exp = r.experiments[experiment]
    has_clean = r.image(experiment, "clean") is not None
    names = labels(experiment)
    still = curves_of(experiment, lane, other)  # everything but the cursor: the same at every iteration
    curves = dict(still, layout=dict(still["layout"], shapes=[*still["layout"]["shapes"], *plots.cursor_lines(it)]))
    spectra = [(lane_short(n, names[n]), run.spectrum(it)) for run, n in ((b, other), (a, lane)) if run is not None]
    observed, clean = str(r.image(experiment, "observed")), str(r.image(experiment, "clean")) if has_clean else None
    lane_path, other_path = str(a.frame_path(it)), None if b is None else str(b.frame_path(it))
    lane_caption = image_label(a, names[lane], it)
    other_caption = image_label(b, names[other], it) if b is not None else "Left lane: none"
    images = dict(observed=observed, lane_image=lane_path, other_image=other_path, clean=clean)
    captions = dict(lane_caption=lane_caption, other_caption=other_caption)
    updates = dict(
        observed=dict(label=f"Observation · {exp['label']}"),
        lane_image=dict(label=lane_caption),
        other_image=dict(visible=b is not None, label=other_caption),
        clean=dict(visible=has_clean),
    )
    images.update({name: gr.update(value=images[name], **updates[name]) for name in labelled})
    if "other_image" in labelled:
        captions["other_caption"] = gr.update(value=other_caption, visible=b is not None)
    return dict(
        **images,
        **captions,
        curves=figure(curves),
        spectrum=figure(plots.spectrum_dict(spectra)),
        readout=readout(experiment, lane, other, it),
        lesson=lesson_text(events, current),
    )


@functools.lru_cache(maxsize=FRAME_CACHE)
def frame(
    experiment: str,
    lane: str,
    other: str,
    iteration: int | None,
    current: int | None = None,
    labelled: tuple[str, ...] = (),
) -> tuple:
    """TAB_OUTPUTS at ``iteration``, drawn once and kept (read-only: the events hand out copies, ``fresh``)."""
    out = show_replay(experiment, lane, other, iteration, current, figure=plots.plot_data, labelled=labelled)
    return tuple(out[k] for k in TAB_OUTPUTS)


def replay(
    experiment: str = DEFAULT_EXPERIMENT,
    lane: str = DEFAULT_LANE,
    other: str = DEFAULT_OTHER,
    iteration: float | None = None,
) -> tuple:
    """The ``replay`` endpoint, and a new pair of lanes: TAB_OUTPUTS at ``iteration`` (default: the last), the lanes'
    images with their labels."""
    return fresh(frame(experiment, lane, other, None if iteration is None else int(iteration), None, LANES))


def scrub(
    experiment: str = DEFAULT_EXPERIMENT,
    lane: str = DEFAULT_LANE,
    other: str = DEFAULT_OTHER,
    iteration: float | None = None,
) -> tuple:
    """The same pair at another iteration (dragging the slider): TAB_OUTPUTS as plain values."""
    return frame(experiment, lane, other, None if iteration is None else int(iteration))


def fresh(outputs: tuple) -> tuple:
    """Copies of a kept frame's update dicts (Gradio pops their values while sending them)."""
    return tuple(dict(v) if isinstance(v, dict) else v for v in outputs)


_limiters: dict[tuple[str, int], anyio.CapacityLimiter] = {}


def limiter(kind: str) -> anyio.CapacityLimiter:
    """The threads that draw replay frames of ``kind`` (view or play), one set per event loop (a server's)."""
    key = (kind, id(asyncio.get_running_loop()))
    if key not in _limiters:
        _limiters[key] = anyio.CapacityLimiter(PLAY_THREADS if kind == "play" else VIEW_THREADS)
    return _limiters[key]


async def drawn(kind: str, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` in one of the replay tab's own threads of ``kind``; the event itself holds none while waiting."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter(kind))


class Views:
    """The view events (scrubs, lessons, new pairs) drawing now: while any is, players wait for their next frame
    (up to ``PLAY_YIELD_S``), so that a student's scrub is not queued behind a crowd's Play frames."""

    def __init__(self) -> None:
        self.drawing = 0

    async def draw(self, fn: Callable, *args: Any) -> Any:
        self.drawing += 1
        try:
            return await drawn("view", fn, *args)
        finally:
            self.drawing -= 1

    async def wait(self, longest: float = PLAY_YIELD_S) -> None:
        """Wait while views are drawing, at most ``longest`` seconds."""
        end = time.monotonic() + longest
        while self.drawing and time.monotonic() < end:
            await asyncio.sleep(0.02)


VIEWS = Views()


def on_loop(fn: Callable) -> Callable:
    """``fn`` as a coroutine event that draws in the view threads (``drawn``): the tab's events, by name."""

    @functools.wraps(fn)
    async def event(*args: Any) -> Any:
        return await VIEWS.draw(fn, *args)

    return event


class Pacer:
    """One budget of frames per second for every player together: ``turn`` waits for the next free slot."""

    def __init__(self, per_second: float = PLAY_FRAMES_PER_S) -> None:
        self.gap, self.next, self.lock = 1.0 / per_second, 0.0, threading.Lock()

    def delay(self, now: float) -> float:
        """Book the next slot from ``now``: the seconds to wait for it."""
        with self.lock:
            slot = max(now, self.next)
            self.next = slot + self.gap
            return slot - now

    async def turn(self) -> None:
        await asyncio.sleep(self.delay(time.monotonic()))


PACER = Pacer()


def play_frames(frames: list[int], start: int, elapsed: float, shown: int) -> int:
    """The index of the frame to show after ``elapsed`` seconds of playing from ``start`` (one per PLAY_SECONDS), at
    least the one after ``shown``: a player whose turn came late skips frames to keep its pace."""
    return min(len(frames) - 1, max(shown + 1, start + int(elapsed / PLAY_SECONDS)))


async def play(experiment: str, lane: str, other: str, iteration: float | None) -> AsyncIterator[tuple]:
    """Play from the slider's iteration (from the start when it is at the end): the slider, then PLAY_OUTPUTS as plain
    values (not the observation, the clean image and the lesson: they do not change while playing)."""
    _, a, _ = check(experiment, lane, other)
    frames = a.frame_iters
    start = 0 if iteration is None or int(iteration) >= frames[-1] else a.frame_index(int(iteration))
    began, index = time.monotonic(), start - 1
    shown = [TAB_OUTPUTS.index(k) for k in PLAY_OUTPUTS]
    while index < len(frames) - 1:
        await PACER.turn()
        await VIEWS.wait()
        index = play_frames(frames, start, time.monotonic() - began, index)
        outputs = await drawn("play", frame, experiment, lane, other, frames[index])
        yield (frames[index], *(outputs[k] for k in shown))
        if index < len(frames) - 1:
            await asyncio.sleep(max(0.0, began + (index - start + 1) * PLAY_SECONDS - time.monotonic()))


def lesson_choices(
    experiment: str = DEFAULT_EXPERIMENT, lane: str = DEFAULT_LANE, other: str = DEFAULT_OTHER
) -> list[tuple[str, int]]:
    """The pair's lessons as the lesson buttons name them, by number: "① Low frequencies first (vanilla DIP, iteration
    90)"."""
    if replays() is None:
        return []
    names = labels(experiment)
    short = {n: lane_short(n, label) for n, label in names.items()}
    return [
        (f"{plots.event_mark(n + 1)} {e.title} ({short.get(e.lane, e.lane)}, iteration {e.iter})", n)
        for n, e in enumerate(events_of(experiment, lane, other))
    ]


def lessons_update(experiment: str, lane: str, other: str, current: int | None = None) -> dict:
    """The lesson buttons of a new experiment or pair of lanes (none chosen unless ``current``)."""
    return gr.update(choices=lesson_choices(experiment, lane, other), value=current)


def go_to_lesson(experiment: str, lane: str, other: str, current: int | None) -> tuple:
    """Move to the lesson clicked (its number): the slider, then TAB_OUTPUTS at its iteration, the lesson marked."""
    events = events_of(experiment, lane, other)
    if current is None or not 0 <= current < len(events):
        return (gr.skip(), *(gr.skip() for _ in TAB_OUTPUTS))
    it = events[current].iter
    return (it, *frame(experiment, lane, other, it, current))


def next_lesson(experiment: str, lane: str, other: str, current: int | None) -> tuple:
    """Move to the next lesson event (after the last, back to the first): the index, the slider, TAB_OUTPUTS."""
    events = events_of(experiment, lane, other)
    if not events:
        return (None, gr.skip(), *replay(experiment, lane, other, None))
    n = 0 if current is None or current + 1 >= len(events) else current + 1
    it = events[n].iter
    return (n, it, *frame(experiment, lane, other, it, n))


def on_experiment_change(experiment: str, lane: str, other: str) -> tuple:
    """A new experiment (every experiment has the same lanes): the slider's range, its lessons (none chosen), the
    view."""
    last = last_iteration(experiment, lane)
    lessons = lessons_update(experiment, lane, other)
    return (gr.update(maximum=last, value=last), lessons, *fresh(frame(experiment, lane, other, last, None, IMAGES)))


def frame_step() -> int:
    """The slider's step: the replays' snapshot interval (their curves' resolution; images change every frame)."""
    r = replays()
    return 1 if r is None else int(r.manifest["scale"]["every"])
