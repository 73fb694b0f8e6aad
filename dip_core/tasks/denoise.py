"""Denoising: y = clip(x + n), n ~ N(0, σ²); A = identity. σ is known, or estimated from an observed image."""

from __future__ import annotations

import numpy as np

from .. import baselines as cv
from ..io import MIN_SIDE
from ..metrics import noise_sigma_estimate
from .base import Auto, Identity, Level, Task, TaskSpec, check_size, to_image, to_tensor


class Denoise(TaskSpec):
    def degrade(self, clean: np.ndarray, level: float, mask: np.ndarray | None, seed: int) -> Task:
        rng = np.random.default_rng(seed)
        noisy = np.clip(clean + rng.normal(0, level / 255, clean.shape), 0, 1).astype(np.float32)
        return Task(self, level, Identity(), to_tensor(noisy), clean.shape[:2], clean=to_tensor(clean))

    def observe(self, y: np.ndarray, level: float | None, mask: np.ndarray | None) -> Task:
        """``level`` None: σ estimated from the image (Immerkær's estimate); else a note when they disagree."""
        check_size(y, MIN_SIDE, "image")
        task = Task(self, self.level.check(level), Identity(), to_tensor(y), y.shape[:2])
        estimate = noise_sigma_estimate(task.observation) * 255
        if level is None:
            task.level = round(min(estimate, 255.0), 1)
            task.notes.append(f"noise σ estimated from the image: {task.level:g} (Immerkær's estimate)")
        elif abs(estimate - task.level) > max(3.0, 0.3 * task.level):
            task.notes.append(
                f"the image's noise looks like σ ≈ {estimate:.0f} (Immerkær's estimate), "
                f"not the {task.level:g} set; "
                "only the noise-level auto-stop uses σ"
            )
        return task

    def noise_sigma(self, level: float) -> float | None:
        return level / 255 if level > 0 else None

    def describe(self, task: Task, mask_given: bool = False) -> str:
        return f"σ {task.level:g}"

    def baseline(self, task: Task) -> tuple[np.ndarray, cv.Method]:
        y = to_image(task.observation)
        h = cv.nlm_strength(task.level, y.shape[2] == 3)
        return cv.denoise(y, task.level, h), cv.Method("NL-means", f"h {h:.1f}")


SPEC = Denoise(
    name="denoise",
    label="Denoising",
    level=Level(
        "noise σ (0-255)",
        25.0,
        0.0,
        255.0,
        slider=(1, 100, 1),
        info="more noise: a lower peak, and more noise for vanilla DIP to fit after it",
    ),
    estimates_level=True,
    order=1,
    paper_lipschitz=1.4,
    auto=Auto(rule="detail", why="λ auto: the detail rule, which met the bar on 16 of 20 images nobody tuned on"),
)
