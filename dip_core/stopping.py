"""Automatic stopping: the authors' rule on the blur/sharpness ratio r_t (docs/method.md §6), a budget-aware
variant of it, and a noise-level (discrepancy) rule for denoising — the last two are ours."""

from __future__ import annotations

import math
from collections import deque

import torch
import torch.nn.functional as F

from .errors import InputError
from .tasks import Task, spec_of

STOP_RULES = ("off", "paper", "relative", "discrepancy")
#: Steps the discrepancy rule averages the loss over (the loss of one step is noisy).
DISCREPANCY_WINDOW = 50


class RatioWindowStop:
    """Stop at step t > 2n when |m1 − m2| < ε, m1 = mean r[t−2n … t−n−1], m2 = mean r[t−n+1 … t−1].

    ``rule="paper"`` is the authors' rule (n = 100, ε = 0.01, absolute). ``rule="relative"`` is ours,
    for short budgets: the same windows, but |m1 − m2| / |m2| < ε (ε = 0.01 by default), and n scaled
    to the budget (``window = max(10, iterations // 20)``) by ``for_budget``.
    """

    signal = "ratio"  # the per-step value it reads (engine.Recorder)

    def __init__(self, window: int = 100, eps: float = 0.01, relative: bool = False) -> None:
        if window < 2 or not (eps > 0 and math.isfinite(eps)):
            raise ValueError("window must be ≥ 2 and eps a positive number")
        self.n, self.eps, self.relative = int(window), float(eps), relative
        self.ratios: dict[int, float] = {}

    @classmethod
    def for_rule(cls, rule: str, iterations: int) -> RatioWindowStop | None:
        """The stop for a rule name: None for ``off``; the paper's; or ours scaled to ``iterations``."""
        if rule == "off":
            return None
        if rule == "paper":
            return cls(100, 0.01, relative=False)
        if rule == "relative":
            return cls(max(10, iterations // 20), 0.01, relative=True)
        raise ValueError(f"ratio auto-stop rule must be one of off, paper, relative, got {rule!r}")

    def update(self, t: int, ratio: float) -> bool:
        """Record r_t; True when the rule fires at step t."""
        self.ratios[t] = ratio
        n = self.n
        if t <= 2 * n:
            return False
        w1 = [self.ratios.get(i) for i in range(t - 2 * n, t - n)]
        w2 = [self.ratios.get(i) for i in range(t - n + 1, t)]
        if any(v is None for v in w1) or any(v is None for v in w2):
            return False
        m1, m2 = sum(w1) / len(w1), sum(w2) / len(w2)
        if not (math.isfinite(m1) and math.isfinite(m2)):
            return False
        diff = abs(m1 - m2)
        return diff < self.eps * abs(m2) if self.relative else diff < self.eps


def first_stop(ratios: list[tuple[int, float]], rule: str, iterations: int) -> int | None:
    """The first step at which ``rule`` fires on recorded (t, r_t) pairs, or None (offline evaluation)."""
    stopper = RatioWindowStop.for_rule(rule, iterations)
    if stopper is None:
        return None
    for t, r in ratios:
        if stopper.update(t, r):
            return t
    return None


def clipped_noise_energy(observation: torch.Tensor, sigma: float) -> float:
    """E = mean over pixels of E[(clip(x + n, 0, 1) − x)²], n ~ N(0, σ²): the loss a perfect denoiser leaves.

    x is estimated by a 3×3 box filter of y. With a = −x/σ, b = (1 − x)/σ and Φ, φ the normal cdf and pdf,
    E/σ² = Φ(b) − Φ(a) − (b φ(b) − a φ(a)) + a² Φ(a) + b² (1 − Φ(b)); below σ² where y was clipped.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError("sigma must be a positive number")
    y = observation.detach().to("cpu", torch.float64).reshape(-1, 1, *observation.shape[-2:])
    x = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1).clamp(0, 1)
    a, b = -x / sigma, (1 - x) / sigma
    cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)

    def pdf(u: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)

    inside = cdf_b - cdf_a - (b * pdf(b) - a * pdf(a))
    return float(sigma**2 * (inside + a * a * cdf_a + b * b * (1 - cdf_b)).mean())


class DiscrepancyStop:
    """Ours, for denoising at a known σ (Morozov's discrepancy principle): stop at the first step t with
    mean(loss over t − n + 1 … t) ≤ τ · E, E = ``clipped_noise_energy`` (n = 50, τ = 1).

    Once the fit is as close to y as the noise allows, what is left to learn is the noise itself.
    """

    signal = "loss"  # the per-step value it reads (engine.Recorder)

    def __init__(self, noise_energy: float, window: int = DISCREPANCY_WINDOW, tau: float = 1.0) -> None:
        if window < 1 or not (noise_energy > 0 and math.isfinite(noise_energy)) or not (tau > 0 and math.isfinite(tau)):
            raise ValueError("window must be ≥ 1, noise_energy and tau positive numbers")
        self.threshold, self.n = tau * noise_energy, int(window)
        self.losses: deque[float] = deque(maxlen=self.n)

    def update(self, t: int, loss: float) -> bool:
        """Record the loss of step t; True when the rule fires at step t. Non-finite losses reset the window."""
        if not math.isfinite(loss):
            self.losses.clear()
            return False
        self.losses.append(loss)
        return len(self.losses) == self.n and sum(self.losses) / self.n <= self.threshold


def noise_sigma(task_name: str, level: float) -> float:
    """The known noise σ (in [0, 1] units) of a task at ``level``, for the discrepancy rule; a one-line error
    when the task has none (only denoising at σ > 0 has one)."""
    sigma = spec_of(task_name).noise_sigma(level)
    if sigma is None:
        raise InputError(
            "the noise-level (discrepancy) auto-stop needs a known noise level: use it for denoising with σ > 0"
        )
    return sigma


def first_discrepancy_stop(losses: list[tuple[int, float]], noise_energy: float) -> int | None:
    """The first step at which the discrepancy rule fires on recorded (t, loss_t) pairs, or None."""
    stopper = DiscrepancyStop(noise_energy)
    return next((t for t, v in losses if stopper.update(t, v)), None)


def task_noise_energy(task: Task) -> float:
    """The discrepancy rule's threshold for ``task``: ``clipped_noise_energy`` of y at its σ (denoising only)."""
    return clipped_noise_energy(task.observation, noise_sigma(task.name, task.level))


StopRule = RatioWindowStop | DiscrepancyStop


def stop_for(rule: str, iterations: int, task: Task) -> StopRule | None:
    """The stop a run of ``task`` uses: None for ``off``, the discrepancy rule, or a ratio rule."""
    if rule == "discrepancy":
        return DiscrepancyStop(task_noise_energy(task))
    return RatioWindowStop.for_rule(rule, iterations)
