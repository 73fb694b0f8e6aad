"""What the live tab shows of a run (``demo.records.RunData``): the status line, the figures, the images with their
captions, and the animation strip of the downloads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from gradio.components.plot import PlotData

from dip_core.lesson import Event, lesson

from . import budget, plots
from .exports import side_by_side
from .records import RunData, Track
from .settings import LIMITS, device_label


@dataclass
class Frame:
    """What the UI shows at one moment of a run."""

    run: RunData
    results: dict[str, np.ndarray]  # run name → its current image
    captions: dict[str, str]  # run name → what its image is: the run's label, PSNR (or loss) and iteration
    curves: PlotData  # as gr.Plot sends it (plots.plot_data)
    spectrum: PlotData
    status: str
    animation: list[np.ndarray]  # the downloads' GIF frames so far (uint8 strips)

    @property
    def done(self) -> bool:
        return self.run.done


class Animation:
    """The downloads' GIF: a strip of the run's images per frame shown; past ``max_frames`` it keeps every other
    one and records half as often."""

    def __init__(self, max_frames: int = LIMITS.max_frames) -> None:
        self.max_frames = max_frames
        self.frames: list[np.ndarray] = []
        self.stride, self.calls = 1, 0

    def add(self, run: RunData) -> None:
        """Add the strip of ``run``'s current images (always the last one)."""
        self.calls += 1
        if (self.calls - 1) % self.stride and not run.done:
            return
        names = " | ".join(t.short for t in run.tracks.values())
        self.frames.append(side_by_side(list(run.images.values()), f"{names} · iteration {run.iteration}"))
        if len(self.frames) > self.max_frames:
            self.frames, self.stride = self.frames[::2], self.stride * 2


def stream(runs: Iterable[RunData], max_frames: int = LIMITS.max_frames) -> Iterator[Frame]:
    """The frames of a run's moments (``LabRun.stream()``), one each, with the animation they add up to."""
    animation = Animation(max_frames)
    for run in runs:
        yield frame(run, animation)


def frame(run: RunData, animation: Animation) -> Frame:
    """The current images, figures and status line of ``run`` (and one more animation frame)."""
    animation.add(run)
    spectra = [(t.short, run.spectra[name]) for name, t in run.tracks.items() if name in run.spectra]
    curves = plots.curves_dict(
        list(run.tracks.values()),
        run.iterations,
        run.clean is not None,
        run.noise_energy,
        run.baseline.psnr,
        events=events(run),
    )
    return Frame(
        run=run,
        results=run.images,
        captions={name: caption(t) for name, t in run.tracks.items()},
        curves=plots.plot_data(curves),
        spectrum=plots.plot_data(plots.spectrum_dict(spectra)),
        status=status(run),
        animation=animation.frames,
    )


def caption(track: Track) -> str:
    """What a run's image shows, in full: "Vanilla DIP (λ 0, bilinear) · PSNR 27.13 dB at iteration 120" (the
    loss when the clean image is unknown)."""
    s = track.last
    quality = f"PSNR {s.psnr:.2f} dB" if s.psnr is not None else f"loss {s.loss:.2e}"
    return f"{track.label} · {quality} at iteration {s.iter}"


def events(run: RunData) -> list[Event]:
    """The lesson events the curves show so far (dip_core.lesson), marked on the plots as they happen."""
    keys = ("iter", "psnr", "fbc")
    curves = {n: {k: t.column(k) for k in keys} for n, t in run.tracks.items() if t.records}
    for n, curve in curves.items():  # learned bounds: their moves are a lesson too
        if (bound := plots.bound_path(run.tracks[n])) is not None:
            curve["bound"] = bound
    return lesson(curves, {n: t.short for n, t in run.tracks.items()}, done=run.done)


def status(run: RunData) -> str:
    """One line: iteration, steps/s, ETA, device and each run's PSNR (best so far); once done, how it ended."""
    it = run.iteration
    rate = it / run.elapsed
    parts = []
    if run.done:
        parts.append(ending(run))
    else:
        eta = (run.iterations - it) / rate if rate > 0 else float("inf")
        line = f"iteration {it} / {run.iterations} · {rate:.1f} steps/s · ETA {format_seconds(eta)}"
        left = None if run.time_limit is None else run.time_limit - run.running
        if left is not None and run.gpu_seconds is None and it > 0 and eta > left:
            near = it + int(rate * max(0.0, left))
            line += f" (it ends at the {format_seconds(run.time_limit)} limit, near iteration {near})"
        parts.append(line)
    parts.append(device_label())
    if run.gpu_seconds is not None:
        quota = budget.quota_note(run.gpu_seconds)
        parts.append(f"GPU {run.running:.0f} s of {run.gpu_seconds:.0f} s requested, {quota}")
    for t in run.tracks.values():
        s = t.last
        if s.psnr is not None:
            drop = s.best_psnr - s.psnr
            parts.append(f"{t.name} {s.psnr:.2f} dB (best {s.best_psnr:.2f} at {s.best_iter}, −{drop:.2f})")
        else:
            parts.append(f"{t.name} loss {s.loss:.2e}")
    return " · ".join(parts)


def ending(run: RunData) -> str:
    """How the run ended, in a few words."""
    e = run.ending
    it, took = e.iteration, format_seconds(e.elapsed)
    if e.reason == "message":
        return f"Ended: {e.message}"
    if e.reason == "gpu_time":
        return f"Stopped at iteration {it}: the GPU time asked for ({run.gpu_seconds:.0f} s) ran out"
    if e.reason == "time_limit":
        return f"Stopped at iteration {it}: a run's time limit ({format_seconds(run.time_limit)}) was reached"
    if e.reason == "stopped":
        return f"Stopped at iteration {it} after {took}"
    if e.reason == "auto_stop":
        return f"Done: auto-stop at iteration {e.stop_iter}, {it} iterations in {took}"
    return f"Done: {it} iterations in {took}"


def observation_label(run: RunData) -> str:
    """What the observation is, e.g. "Observation (σ 25)"."""
    req = run.request
    if req.observed:
        return "Observation (as uploaded)"
    return f"Observation ({req.task.spec.describe(req.task, req.mask_given)})"


def baseline_label(run: RunData) -> str:
    """The baseline panel's label, short enough for the panel: "Baseline NL-means · 23.72 dB" (no dB when
    the clean image is unknown); the method's parameters are in docs/baselines.md."""
    b = run.baseline
    if b.image is None:
        return "Baseline unavailable"
    return f"Baseline {b.name}" + ("" if b.psnr is None else f" · {b.psnr:.2f} dB")


def format_seconds(seconds: float) -> str:
    """12 s, 3 min 05 s, or — when unknown."""
    if not np.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
