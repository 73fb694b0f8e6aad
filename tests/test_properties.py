"""Property tests: any image size and mode within limits goes through degrade → a few steps → metrics."""

from __future__ import annotations

import io
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dip_core import RunConfig, make_task, run_to_end
from dip_core.io import load_image
from dip_core.metrics import blurriness, frequency_band_correspondence, psnr, sharpness

TINY = dict(width=4, depth=2, iterations=2, every=1, lr=0.01, padding="zeros", sn_method="power", device="cpu")
MODES = ["RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "1"]


def _encode(arr: np.ndarray, mode: str) -> bytes:
    base = Image.fromarray((arr * 255).astype(np.uint8))
    if mode == "I;16":
        im = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    else:
        im = base.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    return buf.getvalue()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(16, 70),
    w=st.integers(16, 70),
    mode=st.sampled_from(MODES),
    task=st.sampled_from(["denoise", "jpeg", "inpaint", "sr", "enhance"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_image_runs_and_metrics_stay_in_range(h, w, mode, task, seed):
    rng = np.random.default_rng(seed % 1000)
    arr = rng.random((h, w, 3))
    img, _ = load_image(_encode(arr, mode))
    assert img.shape[:2] == (h, w) and img.shape[2] in (1, 3)
    level = {"denoise": 25, "jpeg": 20, "inpaint": 0.5, "sr": 2, "enhance": 1.0}[task]
    t = make_task(task, img, level, seed=seed)
    snaps = run_to_end(t, RunConfig(**TINY, seed=seed, lipschitz=1.4))
    last = snaps[-1]
    assert math.isfinite(last.loss) and math.isfinite(last.ratio)
    assert all(0 <= v <= 1 for v in last.fbc)
    if last.psnr is not None:
        assert math.isfinite(last.psnr)
        assert all(0 <= v <= 1 for v in last.fbc_clean)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(12, 60),
    w=st.integers(12, 60),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 10_000),
)
def test_metrics_are_finite_and_bounded(h, w, channels, seed):
    rng = np.random.default_rng(seed)
    a = rng.random((h, w, channels))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    fbc = frequency_band_correspondence(a, b)
    assert len(fbc) == 5 and all(0 <= v <= 1 for v in fbc)
    assert math.isfinite(psnr(a, b))
    assert 0 <= blurriness(a) <= 1 and sharpness(a) >= 0
