"""Plain records of a live run: what ``demo.session`` yields, and ``demo.frames``, ``plots`` and ``exports`` read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from dip_core import Baseline, RunConfig, Snapshot

from .inputs import RunRequest
from .settings import UPSAMPLE_LABELS


def values(value: float | Sequence[float]) -> str:
    """A setting as the labels write it: 1.4, or a per-layer list as 1/1.2/1.4."""
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return "/".join(f"{v:g}" for v in value)


def run_short(name: str, compare: bool) -> str:
    """A run's name without its settings: "Vanilla DIP", "Controlled" (beside vanilla DIP) or "Result"."""
    return "Vanilla DIP" if name == "vanilla" else "Controlled" if compare else "Result"


def run_settings(config: RunConfig) -> str:
    """A run's settings as its label writes them: "λ 0, bilinear", "λ 1.4, Gaussian σ 0.5" or, bounds learned (λ auto),
    "λ learned from 1.4, bilinear"."""
    up = UPSAMPLE_LABELS[config.upsample]
    if config.upsample == "gaussian":
        up += f" σ {values(config.gaussian_sigma)}"
    lam = values(config.lipschitz)
    return f"λ {'learned from ' + lam if config.bound == 'learned' else lam}, {up}"


@dataclass
class Track:
    """The log of one network's run: every snapshot's record, the latest snapshot (with its image). ``short`` is
    its name without its settings (``run_short``): the curves, spectra, lessons and animation name it so."""

    name: str
    short: str
    config: RunConfig
    records: list[dict] = field(default_factory=list)
    last: Snapshot | None = None

    @property
    def label(self) -> str:
        """The run's full name: "Vanilla DIP (λ 0, bilinear)" or "Controlled (λ 1.4, Gaussian σ 0.5)"."""
        return f"{self.short} ({run_settings(self.config)})"

    def add(self, snap: Snapshot) -> None:
        """Log a snapshot (images are not kept, only the latest one); a final one that repeats the last logged
        iteration (the engine's last good snapshot again, after a non-finite loss) adds no second row."""
        if self.last is None or snap.iter != self.last.iter:
            self.records.append(snap.record())
        self.last = snap

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.done

    def column(self, key: str) -> list:
        """One logged field over iterations."""
        return [r[key] for r in self.records]

    def copy(self) -> Track:
        """The track as it is now (later rows are not added to the copy)."""
        return replace(self, records=list(self.records))


@dataclass(frozen=True)
class Ending:
    """Why a run ended. ``reason``: "message" (a network's own, e.g. a non-finite loss), "gpu_time", "time_limit",
    "stopped" (the visitor's Stop), "auto_stop" or "complete"."""

    reason: str
    iteration: int
    elapsed: float
    message: str | None = None
    stop_iter: int | None = None


@dataclass(frozen=True)
class RunData:
    """One moment of a live run (one or two networks on the same task): its inputs, each track's rows so far with
    its latest snapshot, the iteration, timing, and, once done, why it ended."""

    request: RunRequest
    tracks: dict[str, Track]  # run name → its log up to now
    observation: np.ndarray
    clean: np.ndarray | None
    baseline: Baseline  # the classical (OpenCV) result, from the observation only
    spectra: dict[str, np.ndarray]  # run name → |F(output)| / |F(observation)|, clipped (dip_core.replay)
    iterations: int  # the longest run's budget
    noise_energy: float | None  # the noise-level auto-stop's threshold, when that rule is on
    iteration: int  # the furthest track's latest logged iteration
    elapsed: float  # seconds since the first step (to the end, once done)
    running: float  # seconds since the run was made (what a time limit counts)
    time_limit: float | None
    gpu_seconds: float | None  # the GPU time the call asked for (ZeroGPU), if it did
    done: bool = False
    ending: Ending | None = None

    @property
    def images(self) -> dict[str, np.ndarray]:
        """Each run's current image."""
        return {name: t.last.image for name, t in self.tracks.items()}
