"""The discrepancy auto-stop (ours, denoising): its threshold, its rule, real runs that use it, and the noise
estimate that checks the σ a user states for an already noisy image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import small
from outcomes import threshold

from dip_core import InputError, make_task, observed_task
from dip_core.engine import run_to_end
from dip_core.metrics import noise_sigma_estimate
from dip_core.stopping import (
    DISCREPANCY_WINDOW,
    DiscrepancyStop,
    clipped_noise_energy,
    first_discrepancy_stop,
    noise_sigma,
    stop_for,
)
from dip_core.tasks import to_image


def test_noise_energy_is_sigma_squared_away_from_the_clip_and_half_at_zero():
    sigma = 0.05
    mid = torch.full((1, 3, 32, 32), 0.5)
    assert clipped_noise_energy(mid, sigma) == pytest.approx(sigma**2, rel=1e-6)
    black = torch.zeros(1, 1, 32, 32)  # clip(0 + n) − 0 = max(n, 0): E = σ²/2
    assert clipped_noise_energy(black, sigma) == pytest.approx(sigma**2 / 2, rel=1e-6)


def test_noise_energy_matches_the_real_clipped_noise_of_a_real_image(house):
    for seed in (0, 1):
        task = make_task("denoise", house, 25, seed=seed)
        actual = float(((task.observation - task.clean) ** 2).mean())
        estimate = clipped_noise_energy(task.observation, 25 / 255)
        assert actual < (25 / 255) ** 2  # House has saturated pixels: clipping removed some noise energy
        assert estimate == pytest.approx(actual, rel=0.03)


def test_rule_fires_when_the_windowed_mean_reaches_the_threshold():
    energy = 1.0
    losses = [(t, 3.0 - t / 100) for t in range(1, 400)]  # loss 3 → 0, one step at a time
    t = first_discrepancy_stop(losses, energy)
    # first t whose mean over t−49 … t, i.e. 3 − (t − 24.5)/100, is ≤ 1
    assert t == 225
    window = [v for i, v in losses if t - DISCREPANCY_WINDOW < i <= t]
    assert np.mean(window) <= energy < np.mean([v for i, v in losses if t - 1 - DISCREPANCY_WINDOW < i <= t - 1])


def test_rule_needs_a_full_window_and_restarts_after_a_non_finite_loss():
    stop = DiscrepancyStop(1.0, window=5)
    assert not any(stop.update(t, 0.5) for t in range(1, 5))  # below the threshold, but only 4 steps
    assert stop.update(5, 0.5)
    stop = DiscrepancyStop(1.0, window=5)
    for t in range(1, 5):
        stop.update(t, 0.5)
    assert not stop.update(5, float("nan"))
    assert not any(stop.update(t, 0.5) for t in range(6, 10))
    assert stop.update(10, 0.5)
    assert first_discrepancy_stop([(t, 2.0) for t in range(1, 500)], 1.0) is None  # never down to the noise


@pytest.mark.parametrize("task,level", [("jpeg", 10), ("inpaint", 0.5), ("sr", 4), ("enhance", 1), ("denoise", 0)])
def test_rule_is_refused_without_a_known_noise_level(task, level):
    with pytest.raises(InputError, match="denoising") as err:
        noise_sigma(task, level)
    assert "\n" not in str(err.value)


@pytest.mark.outcome
def test_a_real_denoising_run_stops_where_the_rule_says(house64):
    task = make_task("denoise", house64, 25)
    snaps = run_to_end(
        task, small(iterations=threshold("engine_discrepancy", "stop_iter"), every=25, auto_stop="discrepancy")
    )
    last = snaps[-1]
    assert last.stopped and last.done and last.stop_iter is not None
    assert last.iter < threshold("engine_discrepancy", "stop_iter")
    losses = [pair for s in snaps for pair in s.step_losses]
    assert [t for t, _ in losses] == list(range(1, last.iter + 1))  # every step's loss, none twice
    energy = clipped_noise_energy(task.observation, 25 / 255)
    assert first_discrepancy_stop(losses, energy) == last.stop_iter  # the live rule = the offline one
    assert np.mean([v for t, v in losses if t > last.stop_iter - DISCREPANCY_WINDOW]) <= energy * 1.05
    assert not snaps[-1].step_ratios  # the ratio is not measured each step when no ratio rule needs it
    # against the same run left going (same seed: the same curve up to the stop): it stopped near the peak,
    # and going on would have fitted the noise
    going = run_to_end(task, small(iterations=600, every=25))
    assert [s.psnr for s in going[: len(snaps) - 1]] == [s.psnr for s in snaps[:-1]]
    best = max(s.psnr for s in going)
    assert last.psnr >= best - threshold("engine_discrepancy", "gap_db")  # margins: benchmarks.portability
    assert going[-1].psnr < last.psnr - threshold("engine_discrepancy", "overfit_db")


def test_a_run_on_another_task_is_refused_before_it_starts(house64):
    task = make_task("jpeg", house64, 10)
    with pytest.raises(InputError, match="denoising"):
        run_to_end(task, small(auto_stop="discrepancy"))
    assert stop_for("off", 100, task) is None


@pytest.mark.parametrize("sigma", [10, 25, 50])
def test_noise_sigma_estimate_of_a_real_noisy_image(house, sigma):
    y = make_task("denoise", house, sigma).observation
    assert noise_sigma_estimate(y) * 255 == pytest.approx(sigma, rel=0.1)


def test_an_observed_noisy_image_warns_when_the_stated_sigma_looks_wrong(house):
    y = to_image(make_task("denoise", house, 25).observation)
    assert observed_task("denoise", y, 25).notes == []
    (note,) = observed_task("denoise", y, 60).notes
    assert "σ ≈ 25" in note and "60" in note and "\n" not in note


def test_an_observed_noisy_image_without_a_level_gets_its_estimated_sigma(house, tmp_path):
    y = to_image(make_task("denoise", house, 25).observation)
    task = observed_task("denoise", y, None)
    assert task.level == pytest.approx(25, abs=1.5) and "estimated from the image" in task.notes[0]
    from demo.inputs import parse_request
    from dip_core.io import save_png

    save_png(y, tmp_path / "noisy.png")
    req = parse_request(str(tmp_path / "noisy.png"), observed=True, level=None, auto_stop="discrepancy", max_side=256)
    assert req.task.level == task.level and any("estimated" in n for n in req.notes)
    assert parse_request(str(tmp_path / "noisy.png"), observed=False, level=None, max_side=64).task.level == 25
