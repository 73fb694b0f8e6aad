"""Metrics against the authors' own outputs (tests/data/reference_values) and basic properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip_core import metrics


@pytest.mark.parametrize("name", ["clean", "noisy", "blurred"])
def test_blur_and_sharpness_match_reference(reference_values, name):
    values, images = reference_values
    img = images[name]
    assert metrics.blurriness(img) == pytest.approx(values["blur"][name], rel=1e-6)
    assert metrics.sharpness(img) == pytest.approx(values["sharpness"][name], rel=1e-6)
    assert metrics.blur_sharpness_ratio(img) == pytest.approx(values["blur_over_sharpness"][name], rel=1e-6)


def test_fbc_matches_reference(reference_values):
    values, images = reference_values
    for pair, expected in values["fbc"].items():
        out, ref = pair.split("_vs_")
        got = metrics.frequency_band_correspondence(images[out], images[ref], bands=5)
        assert got == pytest.approx(expected, rel=1e-6), pair


def test_metrics_accept_torch_and_grayscale(reference_values):
    _, images = reference_values
    img = images["noisy"]
    t = torch.from_numpy(img)
    assert metrics.blurriness(t) == pytest.approx(metrics.blurriness(img), rel=1e-12)
    gray = metrics.grayscale_t(metrics.to_chw(img)).numpy()
    assert metrics.sharpness(gray) == pytest.approx(metrics.sharpness(img), rel=1e-9)
    fbc = metrics.frequency_band_correspondence(gray, gray)
    assert fbc == pytest.approx([1.0] * 5, abs=1e-6)


def test_fbc_of_blur_drops_with_frequency(reference_values):
    _, images = reference_values
    fbc = metrics.frequency_band_correspondence(images["blurred"], images["clean"])
    assert all(a > b for a, b in zip(fbc, fbc[1:3]))
    assert all(0 <= v <= 1 for v in fbc)


def test_band_map_partitions_the_disc():
    idx = metrics.band_index_map(64, 96)
    assert idx.max() == 4 and idx.min() == -1
    assert idx[32, 48] == 0  # centre is in the lowest band
    assert idx[0, 0] == -1  # the corner is beyond r_5 = 48


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((40, 50, 3)).astype(np.float32)
    assert metrics.psnr(a, a) > 150
    b = np.clip(a + 0.1, 0, 1)
    mse = float(np.mean((a - b) ** 2))
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(1 / mse), rel=1e-6)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert metrics.ssim(a, rng.random((40, 50, 3))) < 0.2


def test_fbc_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        metrics.frequency_band_correspondence(np.zeros((8, 8)), np.zeros((8, 9)))


def test_flat_image_has_finite_blur_and_ratio():
    flat = np.full((32, 32), 0.4)
    assert metrics.blurriness(flat) == 1.0
    assert metrics.sharpness(flat) == 0.0
    assert np.isfinite(metrics.blur_sharpness_ratio(flat))
