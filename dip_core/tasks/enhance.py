"""Detail enhancement: fit f(z) ≈ y = x (A = identity), show clip(x + k·(x − f(z))): the detail the prior
has not learned yet, amplified by the gain k. No ground truth of the enhanced image."""

from __future__ import annotations

import numpy as np
import torch

from .. import baselines as cv
from .base import Identity, Level, Task, TaskSpec, to_image, to_tensor


class Enhance(TaskSpec):
    def degrade(self, clean: np.ndarray, level: float, mask: np.ndarray | None, seed: int) -> Task:
        return Task(self, level, Identity(), to_tensor(clean), clean.shape[:2])

    def finish(self, task: Task, output: torch.Tensor) -> torch.Tensor:
        """clip(x + k·(x − f(z)), 0, 1), k = the level (gain)."""
        x = task.observation
        return (x + task.level * (x - output)).clamp(0, 1)

    def describe(self, task: Task, mask_given: bool = False) -> str:
        return f"gain {task.level:g}"

    def baseline(self, task: Task) -> tuple[np.ndarray, cv.Method]:
        return cv.enhance(to_image(task.observation), task.level), cv.Method("detailEnhance", f"gain {task.level:g}")


SPEC = Enhance(
    name="enhance",
    label="Detail enhancement",
    level=Level(
        "enhancement gain",
        1.0,
        0.0,
        10.0,
        slider=(0, 5, 0.1),
        info="k in x + k·(x − f(z)): how strongly the detail the network has not fitted yet is added back",
    ),
    order=5,
    paper_lipschitz=1.0,
)
