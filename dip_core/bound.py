"""A Lipschitz bound set from the run (issue 24, candidates; docs/method.md §9): train with no bound until a
no-reference signal fires at step T, then bound every 3×3 conv at a fraction of its own spectral norm at T

    λ_l = f · σ(W_l(T)),   W̃_l = W_l / max(1, σ(W_l) / λ_l)   from step T on,

so the network keeps what it has learned (f = 1: nothing changes at T) but its layers cannot grow any further. The
signal is the task's stop rule (``dip_core.stopping``), which fires where the fit stops gaining: instead of stopping,
the run goes on under the bound. For denoising ``Tighten`` then keeps the loss at the noise level by tightening the
bounds whenever it falls below it. ``Ramp`` sets the same final bound gradually: from f = 1 at T down to
f · σ(W_l(T)) over 200 steps, so the layers shrink a little at a time instead of all at once by f.
"""

from __future__ import annotations

import math

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
    the power iteration from here, with its warm-up again); the bounds set, in order."""
    bounds = []
    for conv in net.lipschitz_convs():
        conv.lipschitz = float(fraction * conv.restart_power())
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


class Ramp:
    """From the norms themselves (f = 1) at T to f · σ(W_l(T)) over ``steps`` steps, geometrically:
    λ_l(T + k) = σ(W_l(T)) · f^(min(k, K) / K). A bound set at f all at once scales each layer's output by f and,
    with mean-only norms, the network's output by about f^L; ramped, each step changes it by f^(L/K) (about 0.98)."""

    def __init__(self, net: Decoder, fraction: float, steps: int = 200) -> None:
        self.norms = [conv.lipschitz for conv in net.lipschitz_convs()]
        self.fraction, self.steps = fraction, steps

    def __call__(self, net: Decoder, k: int) -> bool:
        """Set the bounds for ``k`` steps after T; False once the ramp has ended (k > K: nothing to do)."""
        if k > self.steps:
            return False
        scale = self.fraction ** (k / self.steps)
        for conv, norm in zip(net.lipschitz_convs(), self.norms, strict=True):
            conv.lipschitz = norm * scale
        return True


class LearnedBounds:
    """Per-layer bounds learned with the network (after Untrained-Recon, ECCV 2024): λ_l = exp(ρ_l), warm-started at
    λ_0, trained by their own Adam on the data loss L plus a penalty on their product,

        L + α · log Π_l λ_l = L + α · Σ_l ρ_l      (``relative``: log L + α · Σ_l ρ_l),

    so a layer's bound grows only while loosening it lowers the loss by more than α per unit of log λ (relative: by
    more than the fraction α of the loss, the same rule at every loss level: denoising's loss stays near the noise
    energy, inpainting's goes to 0). Call ``apply`` before each step's forward and ``step`` after its backward."""

    def __init__(self, net: Decoder, start: float, penalty: float, lr: float, relative: bool = False) -> None:
        n, device = len(net.lipschitz_convs()), next(net.parameters()).device
        self.rho = torch.full((n,), math.log(start), device=device, requires_grad=True)
        self.penalty, self.relative = penalty, relative
        self.optimizer = torch.optim.Adam([self.rho], lr=lr)

    def apply(self, net: Decoder) -> None:
        """Give every conv its bound as a tensor of the graph (so the backward reaches ρ)."""
        lam = self.rho.exp()
        for i, conv in enumerate(net.lipschitz_convs()):
            conv.lipschitz = lam[i]

    def step(self, loss: torch.Tensor) -> None:
        """One Adam step of ρ on the data gradient the backward left plus the penalty's: α, or α · L for the relative
        penalty (∂/∂ρ of log L + α Σ ρ, times L: the same Adam step up to its ε; no host sync)."""
        if self.rho.grad is None:
            self.rho.grad = torch.zeros_like(self.rho)
        if self.relative:
            self.rho.grad.add_(self.penalty * loss.detach().float())
        else:
            self.rho.grad.add_(self.penalty)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def bounds(self) -> list[float]:
        """The bounds now, as numbers (a host sync: for reports, not every step)."""
        return self.rho.detach().exp().tolist()
