"""Super-resolution: y = A x, A = Lanczos-2 antialiasing then subsampling by the factor (2, 4 or 8)."""

from __future__ import annotations

import numpy as np
import torch

from .. import baselines as cv
from ..errors import InputError
from ..io import MIN_SIDE
from .base import LanczosDownsample, Level, Task, TaskSpec, check_size, to_image, to_tensor


class SuperResolution(TaskSpec):
    def degrade(self, clean: np.ndarray, level: float, mask: np.ndarray | None, seed: int) -> Task:
        """The clean image is cropped to a multiple of the factor; y is its downsampled version."""
        f = int(level)
        h, w = clean.shape[:2]
        hh, ww = (h // f) * f, (w // f) * f
        check_size(clean[:hh, :ww], MIN_SIDE, f"image cropped to a multiple of {f}")
        if min(hh, ww) // f < 8:
            raise InputError(f"image is too small for ×{f} super-resolution (low-res side under 8 pixels)")
        x = to_tensor(clean)[..., :hh, :ww]
        op = LanczosDownsample(f, x.shape[1])
        with torch.no_grad():
            y = op(x).clamp(0, 1)
        return Task(self, level, op, y, (hh, ww), clean=x)

    def observe(self, y: np.ndarray, level: float | None, mask: np.ndarray | None) -> Task:
        """y is the low-resolution image; the result is ``level`` times larger."""
        check_size(y, 8, "low-resolution image")
        level = self.level.check(level)
        f, (h, w) = int(level), y.shape[:2]
        return Task(self, level, LanczosDownsample(f, y.shape[2]), to_tensor(y), (h * f, w * f))

    def observed_scale(self, level: float) -> int:
        return int(level)

    def describe(self, task: Task, mask_given: bool = False) -> str:
        return f"÷{task.level:g}, {task.observation.shape[-1]}×{task.observation.shape[-2]}"

    def baseline(self, task: Task) -> tuple[np.ndarray, cv.Method]:
        image = cv.upscale(to_image(task.observation), task.out_size, cv.SR_METHOD)
        return image, cv.Method(f"{cv.SR_METHOD} upscaling ×{task.level:g}")


SPEC = SuperResolution(
    name="sr",
    label="Super-resolution",
    level=Level(
        "super-resolution factor (2, 4 or 8)",
        4.0,
        2.0,
        8.0,
        choices=(2, 4, 8),
        short="super-resolution factor",
        info="how much smaller the observation is: larger factors leave less detail to recover",
    ),
    order=4,
    paper_lipschitz=1.4,  # not stated in the paper: as for denoising
)
