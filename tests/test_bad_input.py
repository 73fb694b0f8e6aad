"""Every row of docs/bad-input.md is a case here: bad input gets one clear line or a sensible conversion."""

from __future__ import annotations

import io
import re
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip_core import RunConfig, make_task, observed_task, run
from dip_core.errors import InputError
from dip_core.io import load_image
from dip_core.tasks import baseline, to_image

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"
RNG = np.random.default_rng(0)


def png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(w: int = 48, h: int = 32) -> Image.Image:
    return Image.fromarray((RNG.random((h, w, 3)) * 255).astype(np.uint8))


def photo_array() -> np.ndarray:
    """A real photograph (House, 64 px): smooth enough for a noise estimate, unlike ``photo``."""
    from dip_core.io import resize_max_side

    return resize_max_side(load_image(Path(__file__).resolve().parent.parent / "assets" / "house256.png")[0], 64)[0]


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width × height (a decompression bomb's shape, without the bytes)."""
    data = bytearray(png(Image.new("L", (1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return png(photo(48, 32), "JPEG", exif=exif.tobytes())


def animated() -> bytes:
    frames = [Image.new("L", (32, 32), v) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def run_config(**kw) -> Callable[[], object]:
    return lambda: RunConfig(**kw)


def task_with_mask(mask: np.ndarray) -> Callable[[], object]:
    return lambda: make_task("inpaint", np.full((32, 32, 3), 0.5, np.float32), mask=mask)


def without_opencv(action: Callable[[], object]) -> Callable[[], object]:
    """``action`` run as if OpenCV were not installed (``import cv2`` fails)."""

    def call():
        saved = sys.modules.get("cv2")
        sys.modules["cv2"] = None
        try:
            return action()
        finally:
            if saved is None:
                del sys.modules["cv2"]
            else:
                sys.modules["cv2"] = saved

    return call


NO_OPENCV = (
    "classical baseline unavailable: OpenCV is missing: pip install opencv-python-headless (see requirements.txt)"
)


def load(data: bytes) -> Callable[[], object]:
    return lambda: load_image(data)


# (row name in docs/bad-input.md, action, expected error text or None, check of the converted result)
CASES = [
    ("truncated PNG", load(png(photo())[:300]), "corrupt or truncated", None),
    ("text file named .png", load(b"hello, this is text"), "not a readable image", None),
    ("empty file", load(b""), "the file is empty", None),
    ("1×1 image", lambda: make_task("denoise", load_image(png(photo(1, 1)))[0]), "smallest supported side", None),
    (
        "image smaller than the network minimum (e.g. 10×12)",
        lambda: make_task("denoise", load_image(png(photo(10, 12)))[0]),
        "smallest supported side",
        None,
    ),
    (
        "long thin image (300×17)",
        lambda: load_image(png(photo(300, 17)), max_side=128),
        "image is 300×17 pixels: brought to 128 px on its long side, its short side would be under 16 px; "
        "crop it to an aspect ratio of at most 8:1",
        None,
    ),
    ("huge image (20000×20000)", load(declared_png(20000, 20000)), "too large", None),
    ("decompression bomb (declared 60000×60000)", load(declared_png(60000, 60000)), "too large", None),
    ("RGBA", load(png(photo().convert("RGBA"))), None, lambda r: r[0].shape == (32, 48, 3)),
    ("LA", load(png(photo().convert("LA"))), None, lambda r: r[0].shape == (32, 48, 1)),
    ("palette (P)", load(png(photo().convert("P"))), None, lambda r: r[0].shape == (32, 48, 3)),
    ("CMYK", load(png(photo().convert("CMYK"), "TIFF")), None, lambda r: r[0].shape == (32, 48, 3)),
    (
        "16-bit grayscale",
        load(png(Image.fromarray(np.full((32, 48), 65535, np.uint16)))),
        None,
        lambda r: r[0].max() == 1.0,
    ),
    (
        "float TIFF",
        load(png(Image.fromarray(np.full((32, 48), 0.25, np.float32)), "TIFF")),
        None,
        lambda r: abs(r[0].max() - 0.25) < 1e-6,
    ),
    ("grayscale (L)", load(png(photo().convert("L"))), None, lambda r: r[0].shape == (32, 48, 1)),
    ("EXIF-rotated JPEG", load(exif_rotated()), None, lambda r: r[0].shape[:2] == (48, 32)),
    ("animated GIF", load(animated()), None, lambda r: r[0].max() < 0.01 and "first frame" in r[1][0]),
    ("mask of the wrong size", task_with_mask(np.ones((20, 20), np.float32)), "must match", None),
    (
        "mask that is not binary",
        task_with_mask(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)),
        None,
        lambda t: set(np.unique(t.mask.numpy())) == {0.0, 1.0},
    ),
    ("NaN level", lambda: make_task("denoise", np.zeros((32, 32, 3), np.float32), float("nan")), "between", None),
    ("negative level", lambda: make_task("jpeg", np.zeros((32, 32, 3), np.float32), -5), "between", None),
    ("infinite λ", run_config(lipschitz=float("inf")), "lipschitz", None),
    ("λ as a word other than `auto` (`automatic`)", run_config(lipschitz="automatic"), "number or auto", None),
    ("negative Gaussian σ", run_config(gaussian_sigma=-1.0), "gaussian_sigma", None),
    ("absurd iterations (10⁹)", run_config(iterations=10**9), "iterations", None),
    ("negative seed", run_config(seed=-3), "seed", None),
    ("NaN in the image data", lambda: make_task("denoise", np.full((32, 32, 3), np.nan, np.float32)), "NaN", None),
    (
        "noise-level auto-stop on a task without a noise level (JPEG, inpainting, SR, enhancement, or σ = 0)",
        lambda: next(run(make_task("jpeg", photo_array(), 10), RunConfig(auto_stop="discrepancy", device="cpu"))),
        "needs a known noise level",
        None,
    ),
    (
        "already-noisy image whose stated σ is far from its noise (e.g. σ 60 set, 25 present)",
        lambda: observed_task("denoise", to_image(make_task("denoise", photo_array(), 25).observation), 60),
        None,
        lambda t: (
            len(t.notes) == 1
            and 22 <= int(re.search(r"σ ≈ (\d+) ", t.notes[0]).group(1)) <= 29
            and "not the 60 set" in t.notes[0]
        ),
    ),
    (
        "OpenCV not installed (the classical baseline cannot run)",
        without_opencv(lambda: baseline(make_task("denoise", photo_array(), 25))),
        None,
        lambda b: b.image is None and b.unavailable == NO_OPENCV and b.summary()["psnr"] is None,
    ),
]


@pytest.mark.parametrize(("name", "action", "error", "check"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_row(name, action, error, check):
    if error is not None:
        with pytest.raises(InputError) as err:
            action()
        message = str(err.value)
        assert error in message and "\n" not in message, message
    else:
        assert check(action())


def test_loss_turning_nan_mid_run_keeps_the_last_good_image():
    task = make_task("denoise", RNG.random((32, 32, 3)).astype(np.float32), 25)
    config = RunConfig(width=4, depth=2, iterations=50, every=5, device="cpu", sn_method="power")
    snaps = []
    for snap in run(task, config):
        snaps.append(snap)
        if snap.iter == 5:
            task.observation.fill_(float("inf"))
    assert "non-finite" in snaps[-1].message and snaps[-1].iter == 5
    assert np.isfinite(snaps[-1].image).all()


def test_every_row_of_the_doc_table_is_a_case():
    rows = [m.group(1).strip() for m in re.finditer(r"^\| ([^|]+) \|", DOC.read_text(), re.M)]
    rows = [r for r in rows if r not in ("input", "---")]
    from test_bounds import BOUND_ROWS  # bounds on every image: tests/test_bounds.py
    from test_links import LINK_ROWS  # links to a state of the page: tests/test_links.py
    from test_public_space import PUBLIC_ROWS  # the public Space's rows: tests/test_public_space.py
    from test_replays import BAD_REPLAY_ROWS  # the replay endpoint's rows: tests/test_replays.py
    from test_sweep_cluster import RAY_ROWS  # sweeps on a Ray cluster: tests/test_sweep_cluster.py

    names = [c[0] for c in CASES] + ["loss becomes NaN or infinite mid-run", *BAD_REPLAY_ROWS, *PUBLIC_ROWS, *RAY_ROWS]
    names += [*BOUND_ROWS, *LINK_ROWS]
    assert sorted(rows) == sorted(names)
