"""Stacked networks (dip_core.stacked): a compare run's pair as one network computes what the two runs compute."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dip_core import RunConfig, run
from dip_core.engine import build, forward
from dip_core.io import resize_max_side
from dip_core.stacked import build_stacked, run_stacked, unstackable
from dip_core.tasks import make_task

BASE = RunConfig(iterations=30, every=5, width=8, lr=0.01, sn_method="power", device="cpu")


@pytest.fixture(scope="module")
def task32(house):
    return make_task("denoise", resize_max_side(house, 32)[0], 25, seed=0)


@pytest.fixture
def one_thread():
    """Runs compared bit for bit use one thread (the same reduction order in both)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def streams(task, configs, **kw) -> list[list]:
    """Each network's snapshots from one stacked run."""
    out = [[] for _ in configs]
    for snaps in run_stacked(task, configs, **kw):
        for i, s in enumerate(snaps):
            if s is not None:
                out[i].append(s)
    return out


def values(snaps) -> np.ndarray:
    return np.array([[s.iter, s.loss, s.psnr, s.ssim, s.ratio, *s.fbc, *s.fbc_clean] for s in snaps])


PAIRS = {
    "vanilla and λ 1.4": [BASE, replace(BASE, lipschitz=1.4)],
    "bilinear and Gaussian": [BASE, replace(BASE, lipschitz=1.8, upsample="gaussian", gaussian_sigma=0.5, seed=3)],
    "zero padding, per-layer λ": [
        replace(BASE, padding="zeros"),
        replace(BASE, padding="zeros", lipschitz=[2.0] * 6 + [1.0] * 6),
    ],
}


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_stacked_with_one_kernel_per_network_is_the_separate_runs_bit_for_bit(task32, one_thread, pair):
    """With the separate runs' conv kernels (grouped=False), everything else stacked (input, norms, upsampling,
    σ, the summed loss, one Adam) reproduces each run exactly: the stacking itself adds no error."""
    configs = PAIRS[pair]
    separate = [list(run(task32, c)) for c in configs]
    for alone, stacked in zip(separate, streams(task32, configs, grouped=False)):
        assert np.array_equal(values(alone), values(stacked))
        assert np.array_equal(alone[-1].image, stacked[-1].image) and stacked[-1].done


def test_grouped_convs_start_from_the_same_networks_and_gradients(task32):
    """The fast path's first step: the same output and, per network, the same gradients to float rounding."""
    configs = PAIRS["vanilla and λ 1.4"]
    states = [build(task32, c) for c in configs]
    stacked = build_stacked(task32, configs)
    out = forward(stacked.state, configs[0])
    sum(task32.loss(stacked.part(out, i)) for i in range(2)).backward()
    params = list(stacked.state.net.parameters())
    for i, (state, config) in enumerate(zip(states, configs)):
        alone = forward(state, config)
        torch.testing.assert_close(stacked.part(out, i), alone, rtol=1e-5, atol=1e-6)
        task32.loss(alone).backward()
        grads = [p.grad for p in state.net.parameters()]
        floor = 1e-6 * max(g.abs().max().item() for g in grads)  # the conv biases' (0 in exact arithmetic) noise
        for g, q in zip(grads, params):
            n = g.shape[0]
            assert (q.grad[i * n : (i + 1) * n] - g).abs().max().item() <= 1e-4 * g.abs().max().item() + floor


def test_grouped_convs_follow_the_separate_curves(task32):
    """Over 50 small steps the grouped-conv path stays on the separate runs' PSNR curves: measured gap at most
    2.6e-4 dB (1 and 2 threads, this module's networks at lr 1e-4 and 1e-3 ≤ 0.03 dB); the bound is 40× that."""
    configs = [replace(c, lr=1e-4, iterations=50) for c in PAIRS["vanilla and λ 1.4"]]
    for alone, stacked in zip((list(run(task32, c)) for c in configs), streams(task32, configs)):
        assert [s.iter for s in alone] == [s.iter for s in stacked]
        assert np.abs(np.array([s.psnr for s in alone]) - [s.psnr for s in stacked]).max() < 0.01


def test_a_network_that_stops_ends_its_stream_and_the_other_goes_on(house, one_thread):
    """An auto-stop ends one network's snapshots where its separate run ends; the other runs to its end."""
    # the noise-level rule at σ 100 fires early and steadily: at step 80-90 over seeds 0-2 and 1-2 threads
    task = make_task("denoise", resize_max_side(house, 32)[0], 100, seed=0)
    configs = [
        replace(BASE, iterations=250, every=10),
        replace(BASE, iterations=250, every=10, lipschitz=1.4, auto_stop="discrepancy"),
    ]
    separate = [list(run(task, c)) for c in configs]
    stacked = streams(task, configs, grouped=False)
    assert separate[1][-1].stopped and separate[1][-1].iter < 250, "the test needs a stop that fires"
    for alone, st in zip(separate, stacked):
        assert [(s.iter, s.stopped, s.done) for s in alone] == [(s.iter, s.stopped, s.done) for s in st]
    assert stacked[0][-1].iter == 250


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(lr=0.02), "differ in lr"),
        (dict(width=16), "differ in width"),
        (dict(ema=0.9), "per-run tricks"),
        (dict(conv_algo="winograd"), "direct path only"),
    ],
)
def test_runs_that_cannot_be_stacked_say_why(task32, change, reason):
    configs = (
        [BASE, replace(BASE, **change)]
        if "lr" in change or "width" in change
        else [replace(BASE, **change), replace(BASE, lipschitz=1.4, **change)]
    )
    assert reason in unstackable(configs)
    with pytest.raises(ValueError, match=reason):
        next(run_stacked(task32, configs))
    assert unstackable([BASE, replace(BASE, lipschitz=2.0, seed=5, auto_stop="paper")]) is None
