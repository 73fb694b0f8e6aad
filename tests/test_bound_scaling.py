"""The bounds change how the decoder learns, not which images it can produce (issue 35, item 1).

Each 3×3 conv is followed by a mean-only batch norm (x − mean + β, no variance) and LeakyReLU(0.01), which is
positively homogeneous; the upsampling (bilinear or Gaussian) and the reflection padding are linear; the 1×1 head is
not bounded and the sigmoid comes after it. So scaling conv l's effective weight by c_l, its bias and β by
s_l = c_1⋯c_l, and dividing the head's weight by s_L leaves the output unchanged: a network at bounds c·λ (or any
positive per-layer bounds) reproduces every function of the network at λ, and of the unbounded one, exactly.
"""

from __future__ import annotations

import pytest
import torch

from dip_core.layers import MeanOnlyBatchNorm, spectral_norm_exact
from dip_core.nets import Decoder, fourier_input

LAMBDA = 1.4
#: float32 rounding of the equivalence, relative to the largest value: ≤ 1.7e-6 measured (2-core AMD EPYC, one thread)
EXACT = 2e-5
#: the least change that a cut of the bounds alone, or the weights scaled without β, makes here: 0.022-1.3 measured
CHANGED = 1e-2
UPSAMPLE = ("bilinear", "gaussian")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread, as the rest of the suite's tiny networks."""


def decoder(lipschitz: float | list[float], upsample: str) -> Decoder:
    """The paper's decoder at a test's size (8 bounded convs, exact σ), the same weights for any bounds: drawn so that
    every bound binds (σ(W) ≈ 4.5) and β and the biases are not zero, as in a trained network."""
    gen = torch.Generator().manual_seed(0)  # not the global RNG
    net = Decoder(3, width=8, depth=3, upsample=upsample, lipschitz=lipschitz, sn_method="svd", generator=gen)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if p.dim() == 1 else 0.4))
    return net.eval()


def norms(net: Decoder) -> list[MeanOnlyBatchNorm]:
    return [m for m in net.modules() if isinstance(m, MeanOnlyBatchNorm)]


def features(net: Decoder, z: torch.Tensor) -> torch.Tensor:
    """The head's input (after the last norm and LeakyReLU)."""
    return net.body[:-2](z)


def logits(net: Decoder, z: torch.Tensor) -> torch.Tensor:
    """The output before the sigmoid."""
    return net.body[:-1](z)


@torch.no_grad()
def carry(src: Decoder, dst: Decoder, scales: list[float], head: bool = True) -> float:
    """Give ``dst`` the parameters that the algebra says reproduce ``src``: W_l = c_l·W̃_l, b_l and β_l times s_l,
    the head's weight over s_L (``head``); returns s_L."""
    s = 1.0
    for c, a, b, na, nb in zip(scales, src.lipschitz_convs(), dst.lipschitz_convs(), norms(src), norms(dst)):
        s *= c
        b.weight.copy_(c * a.effective_weight())
        b.bias.copy_(s * a.bias)
        nb.bias.copy_(s * na.bias)
    dst.body[-2].weight.copy_(src.body[-2].weight / s if head else src.body[-2].weight)
    dst.body[-2].bias.copy_(src.body[-2].bias)
    return s


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / a.detach().abs().max())


@pytest.fixture(scope="module")
def z() -> torch.Tensor:
    return fourier_input(4, 4, 32, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("upsample", UPSAMPLE)
@pytest.mark.parametrize("c", [0.9, 0.7, 0.5])
def test_a_uniform_cut_of_every_bound_keeps_every_function(z, upsample, c):
    """Bounds c·λ reproduce the λ network exactly; the cut alone (what ``Tighten`` does) changes its output."""
    src, dst = decoder(LAMBDA, upsample), decoder(c * LAMBDA, upsample)
    assert all(spectral_norm_exact(conv.weight) > LAMBDA for conv in src.lipschitz_convs())  # every bound binds
    with torch.no_grad():
        before = logits(src, z)
        cut = logits(dst, z)  # the same raw weights under the tighter bounds
    assert gap(before, cut) > CHANGED
    carry(src, dst, [c] * len(src.lipschitz_convs()))
    for conv in dst.lipschitz_convs():  # the constructed weights are inside the tighter bounds, not clamped
        assert spectral_norm_exact(conv.weight) <= c * LAMBDA * (1 + 1e-6)
        assert torch.equal(conv.effective_weight(), conv.weight) or gap(conv.weight, conv.effective_weight()) < 1e-6
    with torch.no_grad():
        assert gap(before, logits(dst, z)) < EXACT
        assert torch.allclose(src(z), dst(z), rtol=0, atol=1e-6)


@pytest.mark.parametrize("upsample", UPSAMPLE)
def test_any_positive_bounds_hold_every_function_of_the_unbounded_network(z, upsample):
    """Vanilla DIP's function at per-layer bounds from 0.3 to 1.6: c_l = λ_l / σ(W_l) where a bound binds."""
    src = decoder(0.0, upsample)
    lams = torch.linspace(0.3, 1.6, len(src.lipschitz_convs())).flip(0).tolist()
    dst = decoder(lams, upsample)
    scales = [min(1.0, lam / float(spectral_norm_exact(conv.weight))) for lam, conv in zip(lams, src.lipschitz_convs())]
    assert max(scales) < 1  # every bound binds on these weights
    with torch.no_grad():
        before = logits(src, z)
        assert gap(before, logits(dst, z)) > CHANGED
        carry(src, dst, scales)
        assert gap(before, logits(dst, z)) < EXACT


@pytest.mark.parametrize("upsample", UPSAMPLE)
def test_where_the_scale_goes(z, upsample):
    """With β scaled, the head's input scales by exactly s_L = c^L (the head must grow by 1/s_L, 0.9^-8 here); the
    conv biases are dead (the norm subtracts them); scaling the weights without β does not scale the features."""
    c, src = 0.9, decoder(LAMBDA, upsample)
    dst = decoder(c * LAMBDA, upsample)
    s = carry(src, dst, [c] * len(src.lipschitz_convs()), head=False)
    with torch.no_grad():
        feat = features(src, z)
        assert gap(s * feat, features(dst, z)) < EXACT
        for conv in dst.lipschitz_convs():
            conv.bias.normal_(0, 1)
        assert gap(s * feat, features(dst, z)) < EXACT
        for na, nb in zip(norms(src), norms(dst)):
            nb.bias.copy_(na.bias)
        assert gap(s * feat, features(dst, z)) > CHANGED
