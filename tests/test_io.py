"""Reading images of every mode safely, and rejecting what is not an image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

import dip_core.io as dio
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


def test_downscaling_bounds_both_sides_and_refuses_a_thin_image_in_the_uploaded_size(tmp_path):
    """Both sides end ≤ max_side: a 300×17 photo brought to 128 px would be 128×7, so it is refused (it once kept
    its short side and stayed 282 px long); one already thinner than 16 px is refused in its own size."""
    Image.new("RGB", (300, 17), (10, 20, 30)).save(tmp_path / "thin.png")
    with pytest.raises(InputError) as err:
        load_image(tmp_path / "thin.png", max_side=128)
    assert str(err.value) == (
        "image is 300×17 pixels: brought to 128 px on its long side, its short side would be under 16 px; "
        "crop it to an aspect ratio of at most 8:1"
    )
    Image.new("RGB", (300, 10), (10, 20, 30)).save(tmp_path / "thinner.png")
    with pytest.raises(InputError, match=r"^image is 300×10 pixels; the smallest supported side is 16 pixels$"):
        load_image(tmp_path / "thinner.png", max_side=128)
    arr, notes = load_image(tmp_path / "thinner.png")  # no max_side: as it is, and refused by the task
    assert arr.shape == (10, 300, 3) and not notes
    with pytest.raises(InputError, match="image is 300×10 pixels"):
        make_task("denoise", arr)
    Image.new("RGB", (128, 16), (10, 20, 30)).save(tmp_path / "fits.png")  # already fits: unchanged
    arr, notes = load_image(tmp_path / "fits.png", max_side=128)
    assert arr.shape == (16, 128, 3) and not notes
    with pytest.raises(InputError, match="short side would be under 16 px"):
        resize_max_side(np.zeros((16, 300, 1), np.float32), 128, dio.MIN_SIDE)


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


# --- huge uploads: shrunk while decoding, never converted to float at full size -------------------------------


def _full_size_reference(path, max_side):
    """What load_image gave before pre-reduction: the whole image as float, then Lanczos to max_side."""
    im = Image.open(path)
    im.load()
    arr = dio._to_array(ImageOps.exif_transpose(im) or im)
    return resize_max_side(arr, max_side, dio.MIN_SIDE)[0]


@pytest.fixture
def float_shapes(monkeypatch):
    """Records the shape of every image that load_image converts to float."""
    shapes, real = [], dio._to_array

    def spy(im):
        shapes.append(im.size[::-1])
        return real(im)

    monkeypatch.setattr(dio, "_to_array", spy)
    return shapes


def _photo(w, h, seed=0):
    """A w × h RGB image with detail at every scale: a noisy 1/4-size texture upscaled, plus fine noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
    fine = rng.integers(0, 24, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(np.asarray(coarse) // 8 * 7 + fine)


def test_large_png_is_reduced_before_float_and_stays_close(tmp_path, float_shapes):
    path = tmp_path / "big.png"
    _photo(4000, 3000).save(path, compress_level=0)
    arr, notes = load_image(path, max_side=64)
    assert arr.shape == (48, 64, 3) and arr.dtype == np.float32
    assert notes == ["resized from 4000×3000 to 64×48 (maximum side 64 px)"]
    assert float_shapes and max(max(s) for s in float_shapes) <= 4 * 64  # the full-size float array is never built
    reference = _full_size_reference(path, 64)
    assert np.abs(arr - reference).mean() < 0.02


@pytest.mark.parametrize("mode", ["L", "1", "LA", "RGBA", "P", "P_transparent", "CMYK", "I;16", "I", "F"])
def test_every_mode_is_reduced_like_the_full_size_path(tmp_path, float_shapes, mode):
    base = _photo(1024, 768)
    fmt = "PNG"
    if mode in ("I;16", "I"):
        im = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * (257 if mode == "I;16" else 1))
        im = im.convert("I;16") if mode == "I;16" else im
        fmt = "TIFF" if mode == "I" else "PNG"
    elif mode == "F":
        im, fmt = Image.fromarray(np.asarray(base.convert("L"), np.float32) * 3), "TIFF"  # scaled by 1/255
    elif mode == "P_transparent":
        im = base.convert("P")
        im.info["transparency"] = int(np.asarray(im)[0, 0])
    elif mode in ("LA", "RGBA"):
        im = base.convert(mode)
        im.putalpha(Image.linear_gradient("L").resize(base.size))
    else:
        im = base.convert(mode)
        fmt = "TIFF" if mode == "CMYK" else "PNG"
    path = tmp_path / f"big.{fmt.lower()}"
    im.save(path, format=fmt)
    arr, _ = load_image(path, max_side=64)
    assert max(max(s) for s in float_shapes) <= 4 * 64
    reference = _full_size_reference(path, 64)
    assert arr.shape == reference.shape == (48, 64, 1 if mode in ("L", "1", "LA", "I;16", "I", "F") else 3)
    assert np.abs(arr - reference).mean() < 0.02


def test_large_float_tiff_with_nan_is_refused(tmp_path):
    a = np.zeros((700, 1000), np.float32)
    a[650, 990] = np.nan
    Image.fromarray(a).save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match="NaN or infinite"):
        load_image(tmp_path / "nan.tif", max_side=32)


def test_large_jpeg_is_decoded_small_with_draft(tmp_path, float_shapes, monkeypatch):
    from PIL import JpegImagePlugin

    drafts, real = [], JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append((mode, size))
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: the result is upright and portrait
    _photo(2400, 1600).save(tmp_path / "big.jpg", quality=90, exif=exif.tobytes())
    arr, notes = load_image(tmp_path / "big.jpg", max_side=64)
    assert drafts == [("RGB", (-(-2400 // 18), -(-1600 // 18)))]  # factor 2400 // (2 × 64) = 18: DCT scale 8
    assert float_shapes == [(100, 150)]  # decoded at 1/8 (300×200), reduced by 18 // 8 = 2, then made float
    assert arr.shape == (64, 43, 3) and "resized from 1600×2400 to 43×64" in notes[0]
    assert np.abs(arr - _full_size_reference(tmp_path / "big.jpg", 64)).mean() < 0.02


def test_small_images_take_the_exact_old_path(tmp_path, float_shapes):
    _photo(256, 256).save(tmp_path / "a.png")
    arr, notes = load_image(tmp_path / "a.png", max_side=128)
    assert float_shapes == [(256, 256)]  # under 4 × max_side: decoded whole, then Lanczos, as before
    assert np.array_equal(arr, _full_size_reference(tmp_path / "a.png", 128))


def test_large_mask_is_sampled_not_decoded_to_float(tmp_path, float_shapes):
    from demo.inputs import read_mask

    rng = np.random.default_rng(0)
    blocks = (rng.random((30, 40)) > 0.5).astype(np.uint8) * 255
    Image.fromarray(np.kron(blocks, np.ones((30, 30), np.uint8))).convert("RGBA").save(tmp_path / "m.png")
    mask = read_mask(str(tmp_path / "m.png"), (48, 64))
    assert float_shapes == [(48, 64)]
    assert mask.shape == (48, 64, 1) and set(np.unique(mask)) <= {0.0, 1.0}
    full = load_image(tmp_path / "m.png")[0]  # the old path: whole mask as float, then nearest
    assert np.array_equal(mask, dio._nearest_gray(full, (48, 64)))


def test_read_image_decodes_a_file_once_and_returns_copies(tmp_path, monkeypatch):
    import os

    import demo.inputs as inputs

    calls = []
    real = inputs.load_image
    monkeypatch.setattr(inputs, "load_image", lambda p, s, m: calls.append((p, s)) or real(p, s, m))
    inputs.DECODED.clear()
    path = tmp_path / "u.png"
    _photo(300, 200).save(path)
    a, notes = inputs.read_image(str(path), 64)
    a[:] = 0  # a caller's change must not reach the cache
    b, notes_b = inputs.read_image(str(path), 64)
    assert len(calls) == 1 and notes == notes_b and b.max() > 0 and b.flags.writeable
    inputs.read_image(str(path), 32)  # another size: decoded again
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a changed file: again
    inputs.read_image(str(path), 64)
    inputs.read_image(Image.open(path), 64)  # PIL images (and arrays) are not cached
    assert len(calls) == 4
    inputs.DECODED.clear()
