"""The tasks, one module each, collected in ``TASKS``; ``make_task`` and ``observed_task`` build a ``Task``, and
``baseline`` runs its classical (OpenCV) baseline.

Adding a task: a new module here with a ``TaskSpec`` subclass and its ``SPEC``; it is found by name.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np

from ..baselines import Baseline, scored
from ..errors import InputError
from ..io import MIN_SIDE
from .base import LanczosDownsample, Task, TaskSpec, as_hwc, check_size, lanczos2_taps, to_image, to_tensor


#: Every task by name, in the order the CLI and the UI list them.
def _discover() -> dict[str, TaskSpec]:
    specs = [
        importlib.import_module(f"{__name__}.{m.name}").SPEC for m in pkgutil.iter_modules(__path__) if m.name != "base"
    ]
    return {s.name: s for s in sorted(specs, key=lambda s: (s.order, s.name))}


TASKS: dict[str, TaskSpec] = _discover()
#: The λ the paper uses per task for the controlled network (read from the specs).
PAPER_LIPSCHITZ = {name: spec.paper_lipschitz for name, spec in TASKS.items()}


def spec_of(name: str) -> TaskSpec:
    """The spec of task ``name``, else ``InputError`` listing the tasks."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def check_level(task: str, level: float | None) -> float:
    """The level to use for ``task``: its default when None, else a validated finite value."""
    return spec_of(task).level.check(level)


def make_task(
    name: str,
    clean: np.ndarray,
    level: float | None = None,
    *,
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> Task:
    """Degrade a clean H×W×C image in [0, 1] into a task whose ground truth is known (``seed``: noise, mask)."""
    spec = spec_of(name)
    level = spec.level.check(level)
    clean = as_hwc(clean)
    check_size(clean, MIN_SIDE, "image")
    return spec.degrade(clean, level, mask, seed)


def observed_task(
    name: str, observation: np.ndarray, level: float | None = None, *, mask: np.ndarray | None = None
) -> Task:
    """A task from an already degraded image y (no clean image; PSNR unknown).

    For inpainting, ``mask`` (white = known) is required; for SR, ``level`` is the factor to upscale by.
    For denoising, ``level=None`` means the noise σ estimated from the image (Immerkær's estimate).
    """
    spec = spec_of(name)
    spec.level.check(level)
    return spec.observe(as_hwc(observation), level, mask)


def baseline(task: Task) -> Baseline:
    """The task's classical baseline (its spec's), from the observation only; scored against the clean image when
    it is known. If it cannot run, ``unavailable`` says why in one line and ``image`` is None."""
    return scored(lambda: task.spec.baseline(task), None if task.clean is None else to_image(task.clean))


__all__ = [
    "PAPER_LIPSCHITZ",
    "TASKS",
    "LanczosDownsample",
    "Task",
    "TaskSpec",
    "baseline",
    "check_level",
    "lanczos2_taps",
    "make_task",
    "observed_task",
    "spec_of",
    "to_image",
    "to_tensor",
]
