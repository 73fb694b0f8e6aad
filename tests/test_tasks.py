"""Each task's operator and observation, and level validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip_core.errors import InputError
from dip_core.metrics import psnr
from dip_core.tasks import LanczosDownsample, check_level, lanczos2_taps, make_task, observed_task, to_image
from dip_core.tasks.inpaint import hold_out, known_mse


def test_denoise_observation_has_the_requested_noise(house64):
    task = make_task("denoise", house64, 25, seed=3)
    y = to_image(task.observation)
    residual = y - house64
    assert residual.std() == pytest.approx(25 / 255, rel=0.15)  # clipping trims a little
    assert y.min() >= 0 and y.max() <= 1
    again = make_task("denoise", house64, 25, seed=3)
    assert torch.equal(task.observation, again.observation)
    assert not torch.equal(task.observation, make_task("denoise", house64, 25, seed=4).observation)


def test_identity_loss_is_mse(house64):
    task = make_task("denoise", house64, 25)
    out = torch.full_like(task.observation, 0.5)
    assert float(task.loss(out)) == pytest.approx(float(((out - task.observation) ** 2).mean()))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_is_blocky_and_lossy(house64, channels):
    img = house64 if channels == 3 else house64.mean(axis=2, keepdims=True)
    low = make_task("jpeg", img, 5)
    high = make_task("jpeg", img, 95)
    assert low.observation.shape[1] == channels
    assert psnr(to_image(low.observation), img) < psnr(to_image(high.observation), img)


def test_inpaint_bernoulli_mask_and_masked_loss(house64):
    task = make_task("inpaint", house64, 0.3, seed=0)
    keep = float(task.mask.mean())
    assert keep == pytest.approx(0.3, abs=0.05)
    out = task.clean.clone()
    out[task.mask.expand_as(out) == 0] = 0.123  # changing unknown pixels does not change the loss
    assert float(task.loss(out)) == pytest.approx(0.0, abs=1e-12)


def test_inpaint_hold_out_splits_the_known_pixels(house64):
    """A tenth of the known pixels out of the loss, the same ones for a seed; the task itself is left as it was."""
    task = make_task("inpaint", house64, 0.5, seed=0)
    mask = task.mask.clone()
    fit, held = hold_out(task, 0.1, seed=0)
    assert torch.equal(fit.mask + held.mask, mask) and float((fit.mask * held.mask).sum()) == 0
    assert float(held.mask.sum()) == round(0.1 * float(mask.sum()))
    assert torch.equal(task.mask, mask) and torch.equal(fit.clean, task.clean)
    assert torch.equal(hold_out(task, 0.1, seed=0)[1].mask, held.mask)
    assert not torch.equal(hold_out(task, 0.1, seed=1)[1].mask, held.mask)
    out = task.clean.clone()
    out[held.mask.expand_as(out) == 1] = 0.5  # wrong on the held-out pixels alone
    assert float(fit.loss(out)) == pytest.approx(0.0, abs=1e-12)
    wrong = ((0.5 - task.clean) * held.mask).square().sum() / (held.mask.sum() * 3)
    assert float(known_mse(held, out)) == pytest.approx(float(wrong)) and float(known_mse(held, out)) > 0.01
    assert float(known_mse(task, task.clean)) == pytest.approx(0.0, abs=1e-12)


def test_inpaint_user_mask(house64):
    mask = np.ones((64, 64), np.float32)
    mask[20:40, 20:40] = 0.2  # grey counts as missing
    task = make_task("inpaint", house64, mask=mask)
    assert float(task.mask.sum()) == 64 * 64 - 400
    with pytest.raises(InputError, match="must match"):
        make_task("inpaint", house64, mask=np.ones((10, 10), np.float32))
    with pytest.raises(InputError, match="nothing to inpaint"):
        make_task("inpaint", house64, mask=np.ones((64, 64), np.float32))


def test_lanczos_downsampler():
    taps = lanczos2_taps(4)
    assert taps.sum() == pytest.approx(1.0) and len(taps) == 16
    op = LanczosDownsample(4, 3)
    flat = torch.full((1, 3, 32, 48), 0.7)
    assert torch.allclose(op(flat), torch.full((1, 3, 8, 12), 0.7), atol=1e-6)
    x = torch.rand(1, 3, 32, 48, requires_grad=True)
    op(x).sum().backward()  # differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_sr_task_sizes(house64, factor):
    task = make_task("sr", house64, factor)
    assert task.observation.shape[-2:] == (64 // factor, 64 // factor)
    assert task.out_size == (64, 64)


def test_sr_too_small_is_an_error(house64):
    with pytest.raises(InputError, match="too small"):
        make_task("sr", house64[:40, :40], 8)


def test_observed_tasks(house64):
    sr = observed_task("sr", house64[:16, :24], 4)
    assert sr.out_size == (64, 96) and sr.clean is None
    with pytest.raises(InputError, match="needs a mask"):
        observed_task("inpaint", house64, 0.5)
    dn = observed_task("denoise", house64)  # no level: the σ estimated from this (clean) image
    assert dn.clean is None and 0 < dn.level < 8 and "estimated" in dn.notes[0]
    assert observed_task("denoise", house64, 25).level == 25


def test_enhance_finish_adds_detail(house64):
    task = make_task("enhance", house64, 2.0)
    smooth = torch.full_like(task.observation, float(task.observation.mean()))
    enhanced = task.finish(smooth)
    x = task.observation
    assert torch.allclose(enhanced, (x + 2 * (x - smooth)).clamp(0, 1))
    assert task.clean is None


@pytest.mark.parametrize(
    ("task", "level", "match"),
    [
        ("denoise", -1, "between"),
        ("denoise", float("nan"), "between"),
        ("jpeg", 0, "between"),
        ("jpeg", 10.5, "whole"),
        ("inpaint", 1.5, "between"),
        ("sr", 3, "2, 4 or 8"),
        ("enhance", float("inf"), "between"),
        ("blur", 1, "unknown task"),
        ("denoise", "abc", "must be a number"),
    ],
)
def test_bad_levels(task, level, match):
    with pytest.raises(InputError, match=match):
        check_level(task, level)


def test_tiny_and_nan_images_are_rejected():
    with pytest.raises(InputError, match="smallest supported"):
        make_task("denoise", np.zeros((8, 8, 3), np.float32))
    bad = np.zeros((32, 32, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        make_task("denoise", bad)
