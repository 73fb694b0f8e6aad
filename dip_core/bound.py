"""A Lipschitz bound set from the run (issue 24, candidates; docs/method.md §9): train with no bound until a
no-reference signal fires at step T, then bound every 3×3 conv at a fraction of its own spectral norm at T

    λ_l = f · σ(W_l(T)),   W̃_l = W_l / max(1, σ(W_l) / λ_l)   from step T on,

so the network keeps what it has learned (f = 1: nothing changes at T) but its layers cannot grow any further. The
signal is the task's stop rule (``dip_core.stopping``), which fires where the fit stops gaining: instead of stopping,
the run goes on under the bound. For denoising ``Tighten`` then keeps the loss at the noise level by tightening the
bounds whenever it falls below it.
"""

from __future__ import annotations

import torch

from .nets import Decoder
from .stopping import StopRule, stop_for
from .tasks import Task, spec_of


def trigger_for(task: Task, iterations: int) -> StopRule:
    """The stop rule whose firing sets the bound (a fresh one per run): the noise-level rule where the task knows its
    noise σ (denoising at σ > 0), else the budget-scaled ratio rule."""
    known = spec_of(task.name).noise_sigma(task.level)
    rule = stop_for("discrepancy" if known else "relative", iterations, task)
    assert rule is not None
    return rule


@torch.no_grad()
def bound_from_norms(net: Decoder, fraction: float) -> list[float]:
    """Set λ_l = ``fraction`` · σ(W_l) for every 3×3 conv of ``net`` (σ by exact SVD, whose singular vectors warm-start
    the power iteration from here); the bounds set, in order."""
    bounds = []
    for conv in net.lipschitz_convs():
        mat = conv.weight.detach().reshape(conv.weight.shape[0], -1)
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        conv._u.copy_(u[:, 0])
        conv._v.copy_(vh[0])
        conv._updates = 0  # the power iteration's warm-up again: 16 iterations a step for 100 steps
        conv.lipschitz = float(fraction * s[0])
        bounds.append(conv.lipschitz)
    return bounds


class Tighten:
    """Denoising, after the bound is set: every ``window`` steps, when the window's mean loss fell below (1 − margin)·E
    (E the noise energy of the discrepancy rule), the network is fitting the noise, so every bound tightens:
    λ_l ← factor · λ_l. Morozov's discrepancy principle as a feedback on λ instead of a stop."""

    def __init__(self, noise_energy: float, window: int = 50, margin: float = 0.02, factor: float = 0.9) -> None:
        self.threshold, self.window, self.factor = (1 - margin) * noise_energy, window, factor
        self.times = 0  # how often it tightened

    def __call__(self, net: Decoder, losses: list[float]) -> bool:
        """One window's losses; True when it tightened the bounds."""
        if sum(losses) / len(losses) >= self.threshold:
            return False
        for conv in net.lipschitz_convs():
            conv.lipschitz *= self.factor
        self.times += 1
        return True
