"""dip_core.bound: a bound set from the network's own norms at a step, and the signal that sets it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip_core.bound import bound_from_norms, trigger_for
from dip_core.errors import InputError
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


# ---------------------------------------------------------------- what ``lipschitz="auto"`` ships (issue 35)


def test_the_detail_energy_tells_a_smooth_image_from_a_detailed_one_under_the_same_noise():
    from dip_core.bound import DETAIL_SPLIT, denoise_lambda, detail_energy

    flat = np.full((64, 64, 3), 0.5)
    ramp = np.broadcast_to(np.linspace(0.1, 0.9, 64)[None, :, None], (64, 64, 3))
    texture = np.random.default_rng(1).random((64, 64, 3))
    for smooth in (flat, ramp):  # the noise's own share is taken off: about 0 left
        task = make_task("denoise", smooth, 25, seed=0)
        assert abs(detail_energy(task)) < 0.3 * DETAIL_SPLIT and denoise_lambda(task) == 1.0
    task = make_task("denoise", texture, 25, seed=0)
    assert detail_energy(task) > 5 * DETAIL_SPLIT and denoise_lambda(task) == 1.4
    with pytest.raises(InputError, match="known noise level"):
        detail_energy(make_task("jpeg", texture, 10))


@pytest.mark.parametrize("name", ["denoise", "jpeg", "inpaint", "sr", "enhance"])
def test_auto_resolves_for_every_task_to_a_bound_and_one_note(name):
    from dip_core import RunConfig, resolve
    from dip_core.bound import auto_control

    img = np.random.default_rng(0).random((32, 32, 3))
    task = make_task(name, img)
    config = resolve(task, RunConfig(lipschitz="auto", width=8, depth=2, iterations=2, device="cpu"))
    control, note = auto_control(task)
    assert config.lipschitz == control["lipschitz"] > 0 and config.bound == control["bound"]
    assert note.startswith("λ auto") and "\n" not in note and task.notes.count(note) == 1
    resolve(task, RunConfig(lipschitz="auto", width=8, depth=2, iterations=2, device="cpu"))
    assert task.notes.count(note) == 1  # said once, however often the config is resolved


def test_lipschitz_takes_the_word_auto_and_no_other():
    from dip_core import RunConfig

    assert RunConfig(lipschitz="auto").lipschitz == "auto" == RunConfig.check("lipschitz", "auto")
    for bad in ("Auto", "learned", "1.4x"):
        with pytest.raises(InputError, match="lipschitz"):
            RunConfig(lipschitz=bad)
    with pytest.raises(InputError, match="bound"):
        RunConfig(bound="auto")
    with pytest.raises(InputError, match="auto_stop"):
        RunConfig(auto_stop="auto")  # the word belongs to λ only


def test_a_learned_run_moves_its_bounds_and_shows_their_path(house64):
    from dataclasses import replace

    from dip_core import preset, run_to_end
    from dip_core.engine import graph_start
    from dip_core.stacked import unstackable

    cfg = preset("cpu", width=8, depth=2, lr=0.01, iterations=20, every=5, device="cpu", conv_algo="direct")
    learned = replace(cfg, lipschitz=1.4, bound="learned")
    snaps = run_to_end(make_task("jpeg", house64[:32, :32], 10), learned)
    bounds = [s.bound for s in snaps]
    assert all(b is not None and 0 < b for b in bounds) and bounds[-1] != pytest.approx(1.4, abs=1e-6)
    assert snaps[-1].record()["bound"] == bounds[-1]
    fixed = run_to_end(make_task("jpeg", house64[:32, :32], 10), replace(cfg, lipschitz=1.4))
    assert all(s.bound is None for s in fixed) and "bound" not in fixed[-1].record()
    assert graph_start(replace(learned, cuda_graph=True)) is None  # a graph would replay the captured bounds
    assert "learned" in unstackable([learned, learned])
    with pytest.raises(InputError, match="one positive"):
        run_to_end(make_task("jpeg", house64[:32, :32], 10), replace(learned, lipschitz=0.0))
