"""What ``lipschitz="auto"`` runs (issue 35; docs/method.md §9): per task a rule judged on images nobody tuned on, or
the fixed λ that did best there, said in one line (``auto_control``, applied by ``autotune.resolve``).

Two rules are here. Denoising's ``detail``: λ 1 or 1.4 chosen before the run from the clean image's detail energy,
estimated from the noisy one (a smooth image is fitted before the noise and wants the tighter bound). The learned
bounds (after Untrained-Recon): per-layer λ_l = exp(ρ_l) trained beside the network with a penalty on log Π λ_l.
What was tried and did not ship (bounds set from the norms at a stop signal, a noise-level feedback, a ramp, a
penalty relative to the loss) is in the second round's commit, e380036:dip_core/bound.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import RunConfig
from .errors import InputError
from .nets import Decoder
from .stopping import clipped_noise_energy
from .tasks import Task, spec_of

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


def denoise_lambda(task: Task, energy: float | None = None) -> float:
    """Denoising's ``auto`` λ: 1 for a smooth image, 1.4 for a detailed one (``detail_energy``, or ``energy`` when
    already measured, against DETAIL_SPLIT)."""
    return 1.0 if (detail_energy(task) if energy is None else energy) < DETAIL_SPLIT else 1.4


def auto_control(task: Task) -> tuple[dict, str]:
    """The RunConfig fields ``lipschitz="auto"`` stands for on ``task`` (λ, and whether it is learned: the task spec's
    ``auto``, set from issue 35's judge) and the one line that says what runs and why."""
    spec = spec_of(task.name)
    auto, paper = spec.auto, spec.paper_lipschitz
    if auto.rule == "learned":
        return dict(lipschitz=paper, bound="learned"), auto.why
    if auto.rule == "detail":
        if spec.noise_sigma(task.level) is None:
            return dict(
                lipschitz=paper, bound="fixed"
            ), f"λ auto: no noise level to weigh the detail against; λ {paper:g}"
        energy = detail_energy(task)  # measured once: the λ and the note read it
        lam = denoise_lambda(task, energy)
        return dict(lipschitz=lam, bound="fixed"), f"{auto.why} (detail energy {energy:.1f} → λ {lam:g})"
    lam = paper if auto.lipschitz is None else auto.lipschitz
    return dict(lipschitz=lam, bound="fixed"), auto.why.format(lam=f"{lam:g}")


class LearnedBounds:
    """Per-layer bounds learned with the network (after Untrained-Recon, ECCV 2024): λ_l = exp(ρ_l), warm-started at
    λ_0, trained by their own Adam on the data loss L plus a penalty on their product,

        L + α · log Π_l λ_l = L + α · Σ_l ρ_l,

    so a layer's bound grows only while loosening it lowers the loss by more than α per unit of log λ (α = 0: the data
    alone moves them). Call ``apply`` before each step's forward and ``step`` after its backward."""

    def __init__(self, net: Decoder, start: float, penalty: float, lr: float) -> None:
        n, device = len(net.lipschitz_convs()), next(net.parameters()).device
        self.rho = torch.full((n,), math.log(start), device=device, requires_grad=True)
        self.penalty = penalty
        self.optimizer = torch.optim.Adam([self.rho], lr=lr)

    @classmethod
    def for_run(cls, net: Decoder, task: Task, config: RunConfig) -> LearnedBounds:
        """The learned bounds of a run with ``bound="learned"``: from its λ (one positive number), the task's
        penalty, the network's learning rate."""
        lam = config.lipschitz
        if not isinstance(lam, (int, float)) or lam <= 0:
            raise InputError(f"learned bounds start from one positive λ, got {lam!r}")
        return cls(net, float(lam), spec_of(task.name).auto.penalty, config.lr)

    def apply(self, net: Decoder) -> None:
        """Give every conv its bound as a tensor of the graph (so the backward reaches ρ)."""
        lam = self.rho.exp()
        for i, conv in enumerate(net.lipschitz_convs()):
            conv.lipschitz = lam[i]

    def step(self, stepped: bool = True) -> None:
        """One Adam step of ρ on the data gradient the backward left plus the penalty's α (no host sync);
        ``stepped=False``: the network's step was undone (backtracking), and so is this one."""
        if stepped:
            if self.rho.grad is None:
                self.rho.grad = torch.zeros_like(self.rho)
            self.rho.grad.add_(self.penalty)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def mean(self) -> float:
        """The bounds' geometric mean, a number (a host sync: at snapshots)."""
        return float(self.rho.detach().mean().exp())

    def bounds(self) -> list[float]:
        """The bounds now, as numbers (a host sync: for reports, not every step)."""
        return self.rho.detach().exp().tolist()
