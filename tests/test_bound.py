"""dip_core.bound: what ``lipschitz="auto"`` runs (issue 35): the learned bounds, denoising's detail rule, resolving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip_core.errors import InputError
from dip_core.layers import spectral_norm_exact
from dip_core.nets import Decoder
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


def test_learned_bounds_start_at_their_value_and_the_penalty_alone_lowers_them():
    from dip_core.bound import LearnedBounds

    net, _ = trained()
    learned = LearnedBounds(net, start=1.4, penalty=1e-3, lr=0.01)
    learned.apply(net)
    assert [float(c.lipschitz.detach()) for c in net.lipschitz_convs()] == pytest.approx([1.4] * 6)
    learned.step()  # no data gradient: the penalty's push only
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


def test_an_undone_step_moves_no_bound():
    from dip_core.bound import LearnedBounds

    net, z = trained()
    learned = LearnedBounds(net, start=0.1, penalty=1e-3, lr=0.01)  # binding: the data gradient reaches ρ
    learned.apply(net)
    ((net(z) - 0.5) ** 2).mean().backward()
    learned.step(stepped=False)  # backtracking undid the network's step
    assert learned.rho.grad is None and learned.bounds() == pytest.approx([0.1] * 6)


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


def test_the_cli_and_a_sweep_take_auto_beside_numbers(tiny_png):
    from dip_core import sweep
    from dip_core.cli import build_parser

    args = build_parser().parse_args(
        ["sweep", "--task", "jpeg", "--images", tiny_png, "--out", "x", "--lipschitz", "auto", "1.4"]
    )
    assert args.lipschitz == ["auto", 1.4]
    specs = sweep.grid("jpeg", tiny_png, args.lipschitz, [None], 1)
    assert [s.variant for s in specs] == ["lamauto", "lam1.4"] and sweep.config_of(specs[0]).lipschitz == "auto"
    run = build_parser().parse_args(["run", "--task", "jpeg", "--image", tiny_png, "--out", "x", "--lipschitz", "auto"])
    assert run.lipschitz == "auto"
