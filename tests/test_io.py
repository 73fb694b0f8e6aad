"""Reading images of every mode safely, and rejecting what is not an image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dip_core import make_task
from dip_core.errors import InputError
from dip_core.io import load_image, resize_max_side, save_png


def _png(im: Image.Image, path, fmt="PNG", **kw):
    im.save(path, format=fmt, **kw)
    return path


def test_rgb_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.random((20, 30, 3)).astype(np.float32)
    save_png(arr, tmp_path / "a.png")
    back, notes = load_image(tmp_path / "a.png")
    assert back.shape == (20, 30, 3) and notes == []
    assert np.abs(back - arr).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(
    ("mode", "channels"),
    [("L", 1), ("1", 1), ("P", 3), ("RGBA", 3), ("LA", 1), ("CMYK", 3), ("I;16", 1), ("F", 1)],
)
def test_modes_are_converted(tmp_path, mode, channels):
    base = Image.linear_gradient("L").resize((40, 24))
    if mode == "I;16":
        im = Image.fromarray(np.asarray(base).astype(np.uint16) * 257)
        fmt, name = "PNG", "a.png"
    elif mode == "F":
        im = Image.fromarray(np.asarray(base).astype(np.float32) / 255)
        fmt, name = "TIFF", "a.tif"
    else:
        im = base.convert(mode)
        fmt, name = ("TIFF", "a.tif") if mode == "CMYK" else ("PNG", "a.png")
    arr, _ = load_image(_png(im, tmp_path / name, fmt))
    assert arr.shape == (24, 40, channels)
    assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    if mode in ("L", "I;16", "F"):
        assert arr[:, :, 0].max() == pytest.approx(1.0, abs=0.03)  # full range kept, not crushed


def test_alpha_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    arr, _ = load_image(_png(im, tmp_path / "t.png"))
    assert np.allclose(arr, 1.0)


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    arr, _ = load_image(tmp_path / "r.jpg")
    assert arr.shape[:2] == (40, 20)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("L", (16, 16), v) for v in (0, 255)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    arr, notes = load_image(tmp_path / "a.gif")
    assert arr.max() < 0.01 and any("first frame" in n for n in notes)


def test_max_side_resizes_with_a_note(tmp_path):
    Image.new("RGB", (400, 100), (10, 20, 30)).save(tmp_path / "w.png")
    arr, notes = load_image(tmp_path / "w.png", max_side=128)
    assert arr.shape == (32, 128, 3) and "resized from 400×100 to 128×32" in notes[0]
    small, note = resize_max_side(np.zeros((10, 20, 1), np.float32), 10)
    assert small.shape == (5, 10, 1) and note


def test_downscaling_keeps_the_short_side_and_refuses_in_the_uploaded_size(tmp_path):
    """A 300×17 photo is not shrunk below the 16 px minimum (it once became 128×7 and was refused as such);
    one already thinner than that is left alone and refused in the size the user uploaded."""
    Image.new("RGB", (300, 17), (10, 20, 30)).save(tmp_path / "thin.png")
    arr, notes = load_image(tmp_path / "thin.png", max_side=128)
    assert arr.shape == (16, 282, 3) and "to 282×16" in notes[0]
    Image.new("RGB", (300, 10), (10, 20, 30)).save(tmp_path / "thinner.png")
    arr, notes = load_image(tmp_path / "thinner.png", max_side=128)
    assert arr.shape == (10, 300, 3) and not notes
    with pytest.raises(InputError, match="image is 300×10 pixels"):
        make_task("denoise", arr)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"hello, I am text", "not a readable image"), (None, "corrupt or truncated")],
)
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.png"
    if content is None:
        rng = np.random.default_rng(0)
        buf = io.BytesIO()
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]  # truncated half-way
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as err:
        load_image(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # a 20000×20000 PNG header with very little data: refused by its declared size
    im = Image.new("1", (20000, 20000))
    im.save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(InputError, match="too large|megapixels"):
        load_image(tmp_path / "bomb.png")
