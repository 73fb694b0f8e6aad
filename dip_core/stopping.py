"""Automatic stopping from the blur/sharpness ratio r_t (method.md §6), and a budget-aware variant of ours."""

from __future__ import annotations

import math

STOP_RULES = ("off", "paper", "relative")


class RatioWindowStop:
    """Stop at step t > 2n when |m1 − m2| < ε, m1 = mean r[t−2n … t−n−1], m2 = mean r[t−n+1 … t−1].

    ``rule="paper"`` is the authors' rule (n = 100, ε = 0.01, absolute). ``rule="relative"`` is ours,
    for short budgets: the same windows, but |m1 − m2| / |m2| < ε (ε = 0.01 by default), and n scaled
    to the budget (``window = max(10, iterations // 20)``) by ``for_budget``.
    """

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
        raise ValueError(f"auto-stop rule must be one of {STOP_RULES}, got {rule!r}")

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
