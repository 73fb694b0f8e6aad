"""dip_core.bound: a bound set from the network's own norms at a step, and the signal that sets it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip_core.bound import bound_from_norms, trigger_for
from dip_core.layers import spectral_norm_exact
from dip_core.nets import Decoder
from dip_core.stopping import DiscrepancyStop, RatioWindowStop
from dip_core.tasks import make_task


def trained(steps: int = 30) -> tuple[Decoder, torch.Tensor]:
    """A small vanilla decoder after a few steps on a random target (its norms have moved from the init)."""
    gen = torch.Generator().manual_seed(0)
    net = Decoder(3, width=8, depth=2, generator=gen)
    z = torch.rand(1, 32, 4, 4, generator=gen)
    target = torch.rand(1, 3, 16, 16, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        ((net(z) - target) ** 2).mean().backward()
        opt.step()
    return net, z


def test_a_bound_at_the_norms_themselves_changes_nothing():
    net, z = trained()
    with torch.no_grad():
        before = net(z)
        bounds = bound_from_norms(net, 1.0)
        after = net(z)
    assert all(b > 0 for b in bounds) and len(bounds) == 6
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("fraction", [0.5, 0.8])
def test_a_fraction_of_the_norms_scales_every_layer_to_it(fraction):
    net, z = trained()
    norms = [float(spectral_norm_exact(c.weight)) for c in net.lipschitz_convs()]
    bounds = bound_from_norms(net, fraction)
    assert bounds == pytest.approx([fraction * n for n in norms], rel=1e-5)
    net.train()
    for conv, n in zip(net.lipschitz_convs(), norms):
        assert float(spectral_norm_exact(conv.effective_weight())) == pytest.approx(fraction * n, rel=1e-3)


def test_the_signal_is_the_noise_level_for_denoising_and_the_ratio_elsewhere():
    img = np.random.default_rng(0).random((32, 32, 3))
    assert isinstance(trigger_for(make_task("denoise", img, 25), 2000), DiscrepancyStop)
    rule = trigger_for(make_task("jpeg", img, 10), 2000)
    assert isinstance(rule, RatioWindowStop) and rule.relative and rule.n == 100


def test_the_feedback_tightens_only_while_the_loss_is_below_the_noise_level():
    from dip_core.bound import Tighten

    net, _ = trained()
    bounds = bound_from_norms(net, 0.7)
    tighten = Tighten(noise_energy=0.01, window=4)
    assert not tighten(net, [0.0100, 0.0099, 0.0101, 0.0100])  # at the noise level (within the 2 % margin)
    assert [c.lipschitz for c in net.lipschitz_convs()] == bounds
    assert tighten(net, [0.0090, 0.0095, 0.0092, 0.0093])  # below it: the network fits the noise
    assert [c.lipschitz for c in net.lipschitz_convs()] == pytest.approx([0.9 * b for b in bounds])
    assert tighten.times == 1


def test_the_ramp_goes_geometrically_from_the_norms_to_the_fraction_and_stays():
    from dip_core.bound import Ramp

    net, _ = trained()
    norms = bound_from_norms(net, 1.0)
    ramp = Ramp(net, 0.7, steps=200)
    bounds = lambda: [c.lipschitz for c in net.lipschitz_convs()]  # noqa: E731
    assert ramp(net, 0) and bounds() == pytest.approx(norms)
    assert ramp(net, 100) and bounds() == pytest.approx([0.7**0.5 * n for n in norms])
    assert ramp(net, 200) and bounds() == pytest.approx([0.7 * n for n in norms])
    assert not ramp(net, 201) and bounds() == pytest.approx([0.7 * n for n in norms])


def test_learned_bounds_start_at_their_value_and_the_penalty_alone_lowers_them():
    from dip_core.bound import LearnedBounds

    net, _ = trained()
    learned = LearnedBounds(net, start=1.4, penalty=1e-3, lr=0.01)
    learned.apply(net)
    assert [float(c.lipschitz.detach()) for c in net.lipschitz_convs()] == pytest.approx([1.4] * 6)
    learned.step(torch.tensor(0.01))  # no data gradient: the penalty's push only
    assert all(b < 1.4 for b in learned.bounds())


@pytest.mark.parametrize("binds", [True, False])
def test_learned_bounds_get_the_data_gradient_only_where_the_bound_binds(binds):
    from dip_core.bound import LearnedBounds

    net, z = trained()
    norms = [float(spectral_norm_exact(c.weight)) for c in net.lipschitz_convs()]
    start = 0.5 * min(norms) if binds else 2 * max(norms)  # every bound binds, or none does
    learned = LearnedBounds(net, start=start, penalty=0.0, lr=0.01)
    learned.apply(net)
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ((net(z) - target) ** 2).mean().backward()
    assert [g != 0 for g in learned.rho.grad.tolist()] == [binds] * len(norms)


def test_the_relative_penalty_is_the_absolute_one_at_the_loss_times_alpha():
    from dip_core.bound import LearnedBounds

    net, _ = trained()
    rel = LearnedBounds(net, start=1.4, penalty=0.1, lr=0.01, relative=True)
    rel.step(torch.tensor(0.02))
    assert rel.optimizer.state[rel.rho]["exp_avg"].tolist() == pytest.approx([0.1 * 0.1 * 0.02] * 6)
