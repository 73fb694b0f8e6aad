"""Reading any image file safely into a float H×W×C array in [0, 1], and writing PNGs."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

#: Refuse images with more pixels than this before decoding them (decompression bombs, huge scans).
MAX_PIXELS = 64_000_000
#: The smallest image side the decoder takes (its coarsest grid must keep ≥ 2×2 pixels); downscaling keeps it.
MIN_SIDE = 16


def _to_array(im: Image.Image) -> np.ndarray:
    """A PIL image of any mode → H×W×1 or H×W×3 float32 in [0, 1] (alpha composited on white)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if a.max() > 255 or mode.startswith("I;16") else 255.0
        return np.clip(a / top, 0, 1).astype(np.float32)[:, :, None]
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise InputError("image contains NaN or infinite pixel values")
        top = a.max()
        scale = 1.0 if top <= 1 else 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
        return np.clip(a / scale, 0, 1).astype(np.float32)[:, :, None]
    if mode == "P":
        im = im.convert("RGBA")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        gray = im.mode in ("LA", "La")
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("L" if gray else "RGB")
    if im.mode in ("1", "L"):
        return (np.asarray(im.convert("L"), dtype=np.float32) / 255)[:, :, None]
    if im.mode != "RGB":
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    return np.asarray(im, dtype=np.float32) / 255


def load_image(
    source: str | os.PathLike | bytes | Image.Image, max_side: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """Read a file, bytes or PIL image into H×W×C float32 in [0, 1], applying EXIF rotation.

    Returns the array and a list of notes for the user (resized, first frame of an animation, ...).
    Raises ``InputError`` with a one-line message for anything that is not a readable image.
    """
    notes: list[str] = []
    if isinstance(source, Image.Image):
        im = source
        name = "image"
    else:
        if isinstance(source, bytes):
            data, name = source, "image"
        else:
            path = Path(source)
            name = path.name
            if not path.is_file():
                raise InputError(f"{source}: no such file")
            data = path.read_bytes()
        if not data:
            raise InputError(f"{name}: the file is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            if isinstance(err, UnidentifiedImageError):
                raise InputError(f"{name}: not a readable image file") from None
            raise InputError(f"{name}: image is too large to open") from None
        except Exception as err:  # noqa: BLE001 — any decoder failure is bad input
            raise InputError(f"{name}: cannot read image ({err})") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise InputError(f"{name}: image is {w}×{h} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels")
    if w < 1 or h < 1:
        raise InputError(f"{name}: image has no pixels")
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
        notes.append("animated image: using its first frame")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            arr = _to_array(im)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 — truncated or corrupt data
        raise InputError(f"{name}: image data is corrupt or truncated ({type(err).__name__})") from None
    if max_side and max(arr.shape[:2]) > max_side:
        arr, note = resize_max_side(arr, max_side, MIN_SIDE)
        notes += [note] if note else []
    return arr, notes


def resize_max_side(img: np.ndarray, max_side: int, min_side: int = 1) -> tuple[np.ndarray, str]:
    """Downscale (Lanczos) so the longer side is ``max_side``, but never the shorter side below ``min_side``
    (a long thin image keeps its short side, and its long side stays over ``max_side``); returns the image and a note.
    """
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    kept = ""
    if round(min(h, w) * scale) < min_side:
        scale = min_side / min(h, w)
        kept = f"; the shorter side kept at the {min_side} px minimum"
        if scale >= 1:  # already at or under the minimum: left as it is (and refused in its own size)
            return img, ""
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    chans = [
        np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), mode="F").resize((nw, nh), Image.LANCZOS))
        for c in range(img.shape[2])
    ]
    out = np.clip(np.stack(chans, axis=2), 0, 1).astype(np.float32)
    return out, f"resized from {w}×{h} to {nw}×{nh} (maximum side {max_side} px{kept})"


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask (H×W×C in [0, 1]) resized to ``shape`` (h, w) by nearest neighbour, so it stays two-valued."""
    h, w = shape
    chans = [np.asarray(Image.fromarray(mask[:, :, c].astype(np.float32), mode="F").resize((w, h), Image.NEAREST))
             for c in range(mask.shape[2])]  # fmt: skip
    return np.stack(chans, axis=2)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float H×W×C in [0, 1] → uint8 H×W (grayscale) or H×W×3."""
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return u8[:, :, 0] if u8.ndim == 3 and u8.shape[2] == 1 else u8


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write a float image in [0, 1] as an 8-bit PNG."""
    Image.fromarray(to_uint8(img)).save(path, format="PNG")
