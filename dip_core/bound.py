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
import torch.nn.functional as F

from .config import RunConfig
from .errors import InputError
from .nets import Decoder
from .stopping import StopRule, clipped_noise_energy, stop_for
from .tasks import Task, spec_of

#: ``learnT``'s penalty α per task, chosen on the tuning photos in the second round (reports/auto_lambda/notes.md)
LEARN_PENALTY = {"denoise": 3e-4, "jpeg": 3e-4, "inpaint": 1e-4}
#: the rule each task's ``auto`` lane runs in ``python -m benchmarks auto-lambda`` (issue 35's composition)
AUTO = {"denoise": "detail", "jpeg": "learnT", "inpaint": "learn0"}
#: What ``lipschitz="auto"`` runs per task (``auto_control``; ``autotune.resolve`` applies it): "detail" (denoising's λ
#: from the image's detail energy), "learned" (bounds learned from the paper's λ), or a fixed λ; and the line that says
#: why (issue 35's judge set, CBSD68 0010-0029 at the app's CPU scale: reports/auto_lambda/round3/README.md)
AUTO_RUNS: dict[str, tuple[str | float, str]] = {
    "denoise": ("detail", "λ auto: PENDING"),
    "jpeg": ("learned", "λ auto: PENDING"),
    "inpaint": (1.4, "λ auto: PENDING"),
    "sr": (1.4, "λ auto: no rule was judged for super-resolution; it runs the paper's λ 1.4"),
    "enhance": (1.0, "λ auto: no rule was judged for detail enhancement; it runs the paper's λ 1"),
}


#: denoising's ``auto``: below this detail energy (``detail_energy``, 10⁻³ units) λ 1, else λ 1.4 (issue 35: chosen
#: on the tuning photos, where λ 1 ended higher on every image under 3.5 and λ 1.4 on every one over 5.6)
DETAIL_SPLIT = 4.5
#: the Gaussian high-pass of ``detail_energy``: its σ in pixels
DETAIL_SIGMA = 2.0


def detail_energy(task: Task) -> float:
    """The clean image's high-frequency energy estimated from a noisy observation, in 10⁻³ units: the mean square of
    y − G_σ * y less what the noise alone leaves there (the clipped noise energy E times Σ(δ − g)²). Smooth images
    are fitted fast, before the noise, and want the tighter bound."""
    sigma = spec_of(task.name).noise_sigma(task.level)
    if sigma is None:
        raise InputError("the detail energy needs a known noise level: denoising with σ > 0")
    y = task.observation.detach().to("cpu", torch.float64).reshape(-1, 1, *task.observation.shape[-2:])
    r = math.ceil(4 * DETAIL_SIGMA)
    g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / DETAIL_SIGMA) ** 2)
    g /= g.sum()
    pad = F.pad(y, (r, r, r, r), mode="reflect")
    blurred = F.conv2d(F.conv2d(pad, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    delta = torch.zeros(2 * r + 1, dtype=torch.float64)
    delta[r] = 1
    leak = float(((torch.outer(delta, delta) - torch.outer(g, g)) ** 2).sum())  # Σ(δ − g)² of the 2-D filter
    return 1e3 * (float(((y - blurred) ** 2).mean()) - leak * clipped_noise_energy(task.observation, sigma))


def denoise_lambda(task: Task) -> float:
    """Denoising's ``auto`` λ: 1 for a smooth image, 1.4 for a detailed one (``detail_energy`` against DETAIL_SPLIT)."""
    return 1.0 if detail_energy(task) < DETAIL_SPLIT else 1.4


def auto_control(task: Task) -> tuple[dict, str]:
    """The RunConfig fields ``lipschitz="auto"`` stands for on ``task`` (λ, and whether it is learned) and the one line
    that says what runs and why."""
    what, why = AUTO_RUNS[task.name]
    if what == "learned":
        return dict(lipschitz=spec_of(task.name).paper_lipschitz, bound="learned"), why
    if what == "detail":
        if spec_of(task.name).noise_sigma(task.level) is None:
            return dict(lipschitz=1.4, bound="fixed"), "λ auto: no noise level to weigh the detail against; λ 1.4"
        lam = denoise_lambda(task)
        return dict(lipschitz=lam, bound="fixed"), f"{why} (detail energy {detail_energy(task):.1f} → λ {lam:g})"
    return dict(lipschitz=float(what), bound="fixed"), why


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

    @classmethod
    def for_run(cls, net: Decoder, task: Task, config: RunConfig) -> LearnedBounds:
        """The learned bounds of a run with ``bound="learned"``: from its λ (one positive number), the task's
        penalty, the network's learning rate."""
        lam = config.lipschitz
        if not isinstance(lam, (int, float)) or lam <= 0:
            raise InputError(f"learned bounds start from one positive λ, got {lam!r}")
        return cls(net, float(lam), LEARN_PENALTY.get(task.name, LEARN_PENALTY["denoise"]), config.lr)

    def apply(self, net: Decoder) -> None:
        """Give every conv its bound as a tensor of the graph (so the backward reaches ρ)."""
        lam = self.rho.exp()
        for i, conv in enumerate(net.lipschitz_convs()):
            conv.lipschitz = lam[i]

    def step(self, loss: torch.Tensor | None) -> None:
        """One Adam step of ρ on the data gradient the backward left plus the penalty's: α, or α · L for the relative
        penalty (∂/∂ρ of log L + α Σ ρ, times L: the same Adam step up to its ε; no host sync). ``None``: the
        network's step was undone (backtracking), and so is this one."""
        if loss is None:
            self.optimizer.zero_grad(set_to_none=True)
            return
        if self.rho.grad is None:
            self.rho.grad = torch.zeros_like(self.rho)
        if self.relative:
            self.rho.grad.add_(self.penalty * loss.detach().float())
        else:
            self.rho.grad.add_(self.penalty)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def mean(self) -> float:
        """The bounds' geometric mean, a number (a host sync: at snapshots)."""
        return float(self.rho.detach().mean().exp())

    def bounds(self) -> list[float]:
        """The bounds now, as numbers (a host sync: for reports, not every step)."""
        return self.rho.detach().exp().tolist()
