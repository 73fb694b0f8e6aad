"""Several decoders trained as one: their layers stacked along the channel axis, every conv a grouped conv.

A compare run fits vanilla DIP and a controlled network to the same task with the same shapes. Stacked, the
pair takes one forward, one backward and one Adam update per step: the same number of kernels as one
network, each twice as wide, so a GPU (where a 256² step is bound by kernel launches, not arithmetic) does
both in little more than the time of one, and one CUDA graph holds the whole pair-step.

It computes what the separate runs compute. A network's channels only ever meet its own: grouped convs,
per-channel normalisation and upsampling, and a loss that is the sum of the networks' losses, whose gradient
with respect to one network's weights is that network's own; Adam is elementwise. Each network is built as
``engine.build`` builds it (its own seeded generator), then copied in, so the start is bit-identical; later
steps agree to float rounding (a grouped conv and a batched power iteration may round differently).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .engine import RunState, Snapshot, Stepper, Watch, build, check_resolved, graph_start
from .layers import GaussianUpsample, MeanOnlyBatchNorm, power_iterations, spectral_norm
from .nets import Decoder, Upsample2x
from .stopping import stop_for
from .tasks import Task

#: RunConfig fields the stacked networks may differ in (everything else is one setting for all of them)
MAY_DIFFER = frozenset({"seed", "lipschitz", "upsample", "gaussian_sigma", "auto_stop"})


def unstackable(configs: Sequence[RunConfig]) -> str | None:
    """Why these runs cannot be stacked (one line), or None when they can."""
    if len(configs) < 2:
        return "stacking needs two or more runs"
    first = configs[0]
    for f in fields(RunConfig):
        if f.name not in MAY_DIFFER and any(getattr(c, f.name) != getattr(first, f.name) for c in configs[1:]):
            return f"the runs differ in {f.name}"
    if first.reg_noise_std > 0 or first.ema > 0 or first.backtrack:
        return "input noise, output averaging and backtracking are per-run tricks"
    if first.bound != "fixed":
        return "learned bounds have an optimiser of their own per run"
    if first.conv_algo != "direct":
        return f"conv_algo {first.conv_algo!r}: grouped convs take the direct path only"
    return None


def leaves(net: Decoder) -> list[nn.Module]:
    """The decoder's layers in the order its forward applies them (its body is a chain)."""
    return [m for m in net.body.modules() if not list(m.children())]


class StackedConv(nn.Module):
    """N convs with the same shapes as one grouped conv; each group's weight is W / max(1, σ(W)/λ) with its own
    λ (0: uncontrolled), σ by the same warm-started power iteration (or exact SVD) as LipschitzConv2d.

    ``grouped=False`` runs one conv per network instead (the kernels the separate runs use): the same
    arithmetic as theirs, bit for bit, which is how a test checks the stacking itself.
    """

    def __init__(self, convs: Sequence[nn.Conv2d], grouped: bool = True) -> None:
        super().__init__()
        c = convs[0]
        self.n, self.out_per, self.grouped = len(convs), c.out_channels, grouped
        self.padding_mode, self.pad = c.padding_mode, c.padding[0]
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in convs]).clone())
        self.bias = nn.Parameter(torch.cat([m.bias.detach() for m in convs]).clone())
        self.lipschitz = [float(getattr(m, "lipschitz", 0.0)) for m in convs]
        if any(lam > 0 for lam in self.lipschitz):
            lead = next(m for m in convs if getattr(m, "lipschitz", 0.0) > 0)
            self.sn_method, self.power_iters, self._updates = lead.sn_method, lead.power_iters, lead._updates
            # each group's warm start: its own conv's block, N × K × C_out (an uncontrolled one has one too)
            self.register_buffer("_u", torch.stack([m._u for m in convs]).clone())

    @torch.no_grad()
    def sigma(self, i: int) -> torch.Tensor:
        """σ(W_i) of group i, as LipschitzConv2d.sigma computes it (a few ops on a 128×1152 matrix: a CUDA
        graph makes their launches free, and keeping them per group keeps σ bit-identical)."""
        mat = self.weight.detach()[i * self.out_per : (i + 1) * self.out_per].reshape(self.out_per, -1)
        return spectral_norm(
            mat,
            self._u[i],
            self.sn_method,
            power_iterations(self.power_iters, self._updates),
            update=self.training,
        )

    def effective_weight(self) -> torch.Tensor:
        """Every group's W / max(1, σ/λ) (an uncontrolled group as it is)."""
        if not any(lam > 0 for lam in self.lipschitz):
            return self.weight
        parts = self.weight.split(self.out_per)
        out = [
            w / torch.clamp(self.sigma(i) / lam, min=1.0) if lam > 0 else w
            for i, (w, lam) in enumerate(zip(parts, self.lipschitz))
        ]
        if self.training:
            self._updates += 1
        return torch.cat(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, pad = self.effective_weight(), self.pad
        if pad and self.padding_mode != "zeros":
            x, pad = F.pad(x, (pad,) * 4, mode=self.padding_mode), 0
        if self.grouped:
            return F.conv2d(x, weight, self.bias, padding=pad, groups=self.n)
        chunks = zip(x.chunk(self.n, dim=1), weight.split(self.out_per), self.bias.split(self.out_per))
        return torch.cat([F.conv2d(xi, w, b, padding=pad) for xi, w, b in chunks], dim=1)


class Split(nn.Module):
    """Layers that differ between the networks (bilinear in one, Gaussian in another): each on its channels."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(c) for m, c in zip(self.parts, x.chunk(len(self.parts), dim=1))], dim=1)


def stacked_layer(layers: Sequence[nn.Module], grouped: bool = True) -> nn.Module:
    """One layer doing the work of ``layers`` (the same position in each network) on stacked channels."""
    first = layers[0]
    if isinstance(first, nn.Conv2d):  # LipschitzConv2d, and the 1×1 head
        return StackedConv(layers, grouped)
    if isinstance(first, MeanOnlyBatchNorm):  # per channel already: one over all the channels
        norm = MeanOnlyBatchNorm(sum(m.bias.numel() for m in layers), first.negative_slope)
        norm.bias = nn.Parameter(torch.cat([m.bias.detach() for m in layers]).clone())
        return norm
    if isinstance(first, GaussianUpsample) and all(isinstance(m, GaussianUpsample) for m in layers):
        up = GaussianUpsample(1, 0.0)
        up.kernel = torch.cat([m.kernel for m in layers])  # depthwise: one 5×5 kernel per channel
        return up
    if isinstance(first, Upsample2x) and all(isinstance(m, Upsample2x) and m.mode == first.mode for m in layers):
        return first
    if isinstance(first, nn.Sigmoid):  # elementwise
        return first
    return Split(layers)


@dataclass
class StackedState:
    """The stacked network (as ``RunState``, so ``Stepper`` steps it) and the channels of each network."""

    state: RunState
    channels: int

    def part(self, out: torch.Tensor, i: int) -> torch.Tensor:
        """Network i's output (a view of the stacked one)."""
        return out[:, i * self.channels : (i + 1) * self.channels]


def build_stacked(task: Task, configs: Sequence[RunConfig], grouped: bool = True) -> StackedState:
    """Build each network as ``engine.build`` does (the weights are drawn the same), then stack them."""
    states = [build(task, c) for c in configs]
    per_layer = zip(*(leaves(s.net) for s in states))
    net = nn.Sequential(*(stacked_layer(layers, grouped) for layers in per_layer)).to(states[0].device)
    z = torch.cat([s.z for s in states], dim=1)
    if configs[0].channels_last:
        net, z = net.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    graphed = configs[0].cuda_graph and states[0].device.type == "cuda"
    optimizer = torch.optim.Adam(net.parameters(), lr=configs[0].lr, capturable=graphed, foreach=True)  # as build
    return StackedState(RunState(net, z, states[0].crop, optimizer, states[0].device), task.channels)


class StackedLoss:
    """The task as the Stepper sees it: the sum of the networks' losses; ``parts`` keeps each one (under a
    CUDA graph, the graph's own tensors, refreshed by every replay)."""

    def __init__(self, task: Task, stacked: StackedState, n: int) -> None:
        self.task, self.stacked, self.n = task, stacked, n
        self.parts: list[torch.Tensor] = []

    def loss(self, out: torch.Tensor) -> torch.Tensor:
        self.parts = [self.task.loss(self.stacked.part(out, i)) for i in range(self.n)]
        return torch.stack(self.parts).sum()


def run_stacked(
    task: Task, configs: Sequence[RunConfig], cancel: Callable[[], bool] | None = None, grouped: bool = True
) -> Iterator[list[Snapshot | None]]:
    """``engine.run`` of every config at once, stacked: at each step where some network has a snapshot, the
    list of them (None for the networks without one); each network's stream is the one ``run`` yields
    (``grouped=False``: one conv kernel per network, see StackedConv).

    A network whose auto-stop fired, or whose loss became non-finite, is done (its snapshots end); it still
    trains in the stack, which the others never see.
    """
    configs = [check_resolved(c) for c in configs]  # resolved by the caller (dip_core.resolve)
    why = unstackable(configs)
    if why is not None:
        raise ValueError(f"these runs cannot be stacked: {why}")
    stacked = build_stacked(task, configs, grouped)
    state, n = stacked.state, len(configs)
    view = StackedLoss(task, stacked, n)
    step = Stepper(state, configs[0], view)  # type: ignore[arg-type]  # Stepper needs only .loss of a task
    starts = [graph_start(c) for c in configs]  # the latest warm-up of any network, or eager if one must be
    step.capture_at = None if state.device.type != "cuda" or None in starts else max(starts)
    watches = [Watch(task, c, stop_for(c.auto_stop, c.iterations, task), state.device) for c in configs]
    for t in range(1, configs[0].iterations + 1):
        last = t == configs[0].iterations
        out, _ = step(t, last)
        cancelled = cancel is not None and cancel()
        snaps = [
            None if w.done else w(t, stacked.part(out, i), view.parts[i].detach(), last, cancelled)
            for i, w in enumerate(watches)
        ]
        if any(s is not None for s in snaps):
            yield snaps
        if all(w.done for w in watches):
            return
