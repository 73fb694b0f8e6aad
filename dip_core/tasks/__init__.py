"""The tasks, one module each, collected in ``TASKS``; ``make_task`` and ``observed_task`` build a ``Task``.

Adding a task: a new module here with a ``TaskSpec`` subclass and its ``SPEC``; it is found by name.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np

from ..errors import InputError
from ..io import MIN_SIDE
from .base import (
    Identity,
    LanczosDownsample,
    Level,
    Mask,
    Task,
    TaskSpec,
    as_hwc,
    check_size,
    lanczos2_taps,
    to_image,
    to_tensor,
)
from .inpaint import bernoulli_mask, binarise_mask
from .jpeg import jpeg_compress


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


__all__ = [
    "PAPER_LIPSCHITZ",
    "TASKS",
    "Identity",
    "LanczosDownsample",
    "Level",
    "Mask",
    "Task",
    "TaskSpec",
    "bernoulli_mask",
    "binarise_mask",
    "check_level",
    "jpeg_compress",
    "lanczos2_taps",
    "make_task",
    "observed_task",
    "spec_of",
    "to_image",
    "to_tensor",
]
