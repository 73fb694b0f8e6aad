"""Reading any image file safely into a float H×W×C array in [0, 1], and writing PNGs."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

T = TypeVar("T")

#: Refuse images with more pixels than this before decoding them (decompression bombs, huge scans).
#: 50 MP, down from 64: the native 8/16-bit decode is now the only full-size copy, and at 64 MP (8000×8000) a noisy
#: RGBA PNG took 1.76-2.12 s over 8 loads on a 2-core EPYC (mostly inflating it), at or over the 2 s target, though
#: ≤ 261 MB; at 50 MP every case of the decode-memory test took ≤ 1.32 s and ≤ 207 MB over the idle process.
#: A 50-megapixel camera's 8160×6120 photo still fits.
MAX_PIXELS = 50_000_000
#: The smallest image side the decoder takes (its coarsest grid must keep ≥ 2×2 pixels). Downscaling to a maximum
#: side never goes under it: an image that would (longer than max_side : MIN_SIDE, e.g. 8:1 at 128 px) is refused.
MIN_SIDE = 16
#: Pre-reduction rule: an image is first shrunk by an integer factor (JPEG DCT scaling, then ``Image.reduce``
#: on 8-bit data) only as far as it keeps ``PRE_MARGIN``× its final size, i.e. when its long side is
#: ≥ 2·PRE_MARGIN × max_side; the exact Lanczos resize then makes the final size. Smaller ones are untouched.
PRE_MARGIN = 2
#: Source rows converted at a time by the reduced path (a band of a few MB at 8000 px wide).
BAND_ROWS = 256

_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: EXIF orientation → the transpose that makes it upright (as ``ImageOps.exif_transpose``).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90)


def _divisor(mode: str, peak: float) -> float:
    """What a 16/32-bit or float image is divided by to land in [0, 1], given its largest value."""
    if mode != "F":
        return 65535.0 if peak > 255 or mode.startswith("I;16") else 255.0
    return 1.0 if peak <= 1 else 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak


def _flatten(im: Image.Image) -> Image.Image:
    """An 8-bit PIL image of any mode → "L" or "RGB" (palette expanded, alpha composited on white)."""
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        gray = im.mode in ("LA", "La")
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("L" if gray else "RGB")
    if im.mode in ("1", "L"):
        return im.convert("L")
    return im if im.mode == "RGB" else im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _reducible(im: Image.Image) -> Image.Image:
    """An 8-bit PIL image → a mode ``Image.reduce`` averages as ``_to_array`` means it: "L", "RGB", or with alpha
    ("LA", "RGBA": averaged premultiplied, so compositing the result on white equals averaging the composites)."""
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("L", "RGB", "LA", "RGBA", "La", "RGBa"):
        return im
    return im.convert("L" if im.mode == "1" else "RGB")


def _to_array(im: Image.Image) -> np.ndarray:
    """A PIL image of any mode → H×W×1 or H×W×3 float32 in [0, 1] (alpha composited on white)."""
    mode = im.mode
    if mode in _INT_MODES:
        a = np.asarray(im).astype(np.float64)
        return np.clip(a / _divisor(mode, a.max()), 0, 1).astype(np.float32)[:, :, None]
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise InputError("image contains NaN or infinite pixel values")
        return np.clip(a / _divisor(mode, a.max()), 0, 1).astype(np.float32)[:, :, None]
    im = _flatten(im)
    if im.mode == "L":
        return (np.asarray(im, dtype=np.float32) / 255)[:, :, None]
    return np.asarray(im, dtype=np.float32) / 255


def _bands(
    im: Image.Image, rows: int, convert: Callable[[Image.Image], Image.Image]
) -> Iterator[tuple[int, Image.Image]]:
    """``im`` (loaded) in horizontal bands of ``rows`` rows, each with its top row: 8-bit modes through ``convert``,
    16/32-bit and float ones scaled (as ``_to_array``) to "F" in [0, 1]; never a full-size copy."""
    w, h = im.size
    tops = range(0, h, rows)
    if im.mode not in _INT_MODES and im.mode != "F":
        for y in tops:
            yield y, convert(im.crop((0, y, w, min(h, y + rows))))
        return
    peak = -np.inf
    for y in tops:  # first pass: the image's largest value (and NaN check), as _to_array takes it
        a = np.asarray(im.crop((0, y, w, min(h, y + rows))), dtype=np.float64)
        if im.mode == "F" and not np.isfinite(a).all():
            raise InputError("image contains NaN or infinite pixel values")
        peak = max(peak, float(a.max()))
    div = _divisor(im.mode, peak)
    for y in tops:
        a = np.asarray(im.crop((0, y, w, min(h, y + rows))), dtype=np.float64)
        yield y, Image.fromarray(np.clip(a / div, 0, 1).astype(np.float32), mode="F")


def _scale(w: int, h: int, max_side: int, min_side: int) -> float | None:
    """``resize_max_side``'s scale for a w×h image, None when it already fits (both sides ≤ ``max_side``);
    ``InputError`` when it is thinner than ``min_side`` or bringing it to ``max_side`` would make it so."""
    long, short = max(w, h), min(w, h)
    if long <= max_side:
        return None
    if short < min_side:  # refused in its own size, as the tasks refuse it (tasks.base.check_size)
        raise InputError(f"image is {w}×{h} pixels; the smallest supported side is {min_side} pixels")
    if max_side < min_side:
        raise InputError(f"the maximum side ({max_side} px) is under the smallest supported side ({min_side} px)")
    scale = max_side / long
    if round(short * scale) < min_side:
        raise InputError(
            f"image is {w}×{h} pixels: brought to {max_side} px on its long side, its short side would be under "
            f"{min_side} px; crop it to an aspect ratio of at most {max_side / min_side:g}:1"
        )
    return scale


def _reduction(w: int, h: int, max_side: int | None, min_side: int = MIN_SIDE) -> int:
    """The integer factor a w×h image may be shrunk by before the exact resize to ``max_side`` (1: none): the
    largest that keeps ``PRE_MARGIN``× the final size; ``InputError`` when ``_scale`` refuses the image."""
    if not max_side or _scale(w, h, max_side, min_side) is None:
        return 1
    return int(max(1, max(w, h) // (PRE_MARGIN * max_side)))


def _load_reduced(
    im: Image.Image, factor: int, max_side: int, draft: bool, min_side: int = MIN_SIDE
) -> tuple[np.ndarray, str]:
    """``im`` shrunk by ``factor`` while decoding (JPEG draft, then ``Image.reduce`` band by band on 8-bit data),
    then Lanczos-resized to ``resize_max_side``'s exact size and turned upright by its EXIF orientation."""
    w, h = im.size
    scale = _scale(w, h, max_side, min_side) or 1.0
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    done = 1
    if draft and im.format == "JPEG":
        got = im.draft(im.mode, (-(-w // factor), -(-h // factor)))  # DCT scaling by 1, 2, 4 or 8, never > factor
        done = round(w / got[1][2]) if got else 1
    im.load()
    upright = _UPRIGHT.get(im.getexif().get(0x0112, 1))
    rest = max(1, factor // done)
    cw, ch = im.size
    if im.mode in ("L", "RGB"):  # reduced as it is: no copy at all
        small = im.reduce(rest) if rest > 1 else im
    else:
        small = Image.new("L", (1, 1))
        for y, band in _bands(im, rest * max(1, BAND_ROWS // rest), _reducible):
            part = band.reduce(rest) if rest > 1 else band
            if y == 0:
                small = Image.new(part.mode, (-(-cw // rest), -(-ch // rest)))
            small.paste(part, (0, y // rest))
    arr = _to_array(small)
    box = (0.0, 0.0, w / (done * rest), h / (done * rest))  # the original image in the small one's pixels
    chans = []
    for c in range(arr.shape[2]):
        chan = Image.fromarray(arr[:, :, c], mode="F").resize((nw, nh), Image.LANCZOS, box=box)
        chans.append(np.asarray(chan.transpose(upright) if upright is not None else chan))
    out = np.clip(np.stack(chans, axis=2), 0, 1).astype(np.float32)
    if upright in _SWAPS:
        w, h = h, w
    return out, f"resized from {w}×{h} to {out.shape[1]}×{out.shape[0]} (maximum side {max_side} px)"


@contextlib.contextmanager
def _opened(source: str | os.PathLike | bytes | Image.Image) -> Iterator[tuple[Image.Image, str, bool]]:
    """The source opened lazily (nothing decoded yet), its name for messages and whether this module opened it."""
    if isinstance(source, Image.Image):
        yield source, "image", False
        return
    with contextlib.ExitStack() as stack:
        if isinstance(source, bytes):
            name = "image"
            if not source:
                raise InputError(f"{name}: the file is empty")
            fp: io.BufferedIOBase | io.BytesIO = io.BytesIO(source)
        else:
            path = Path(source)
            name = path.name
            if not path.is_file():
                raise InputError(f"{source}: no such file")
            if path.stat().st_size == 0:
                raise InputError(f"{name}: the file is empty")
            fp = stack.enter_context(open(path, "rb"))  # read as decoded: no copy of the whole file in memory
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(fp)
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            if isinstance(err, UnidentifiedImageError):
                raise InputError(f"{name}: not a readable image file") from None
            raise InputError(f"{name}: image is too large to open") from None
        except Exception as err:  # noqa: BLE001 — any decoder failure is bad input
            raise InputError(f"{name}: cannot read image ({err})") from None
        yield im, name, True


def _decode(
    source: str | os.PathLike | bytes | Image.Image, body: Callable[[Image.Image, bool], T]
) -> tuple[T, list[str]]:
    """Open ``source``, refuse it if too large or empty, then run ``body(image, opened_here)`` with decoder
    failures turned into one-line ``InputError``s; returns its result and the notes (first frame, ...)."""
    notes: list[str] = []
    with _opened(source) as (im, name, ours):
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
                return body(im, ours), notes
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 — truncated or corrupt data
            raise InputError(f"{name}: image data is corrupt or truncated ({type(err).__name__})") from None


def _upright_array(im: Image.Image) -> np.ndarray:
    """The whole image decoded, turned upright by its EXIF orientation, as float (the path for small images)."""
    im.load()
    im = ImageOps.exif_transpose(im) or im
    return _to_array(im)


def _upright_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as shown upright, from its header (its EXIF orientation read only where
    the header already holds it: nothing is decoded)."""
    w, h = im.size
    if "exif" in im.info and _UPRIGHT.get(im.getexif().get(0x0112, 1)) in _SWAPS:
        return h, w
    return w, h


def image_size(source: str | os.PathLike | bytes | Image.Image, max_side: int | None = None) -> tuple[int, int]:
    """An image's upright (width, height) from its header alone, nothing decoded; ``InputError`` where
    ``load_image(source, max_side)`` would refuse it before decoding (not an image, over MAX_PIXELS, too thin)."""

    def body(im: Image.Image, _ours: bool) -> tuple[int, int]:
        w, h = _upright_size(im)
        if max_side:
            _scale(w, h, max_side, MIN_SIDE)
        return w, h

    return _decode(source, body)[0]


def load_image(
    source: str | os.PathLike | bytes | Image.Image, max_side: int | None = None, min_side: int = MIN_SIDE
) -> tuple[np.ndarray, list[str]]:
    """Read a file, bytes or PIL image into H×W×C float32 in [0, 1], applying EXIF rotation.

    Returns the array and a list of notes for the user (resized, first frame of an animation, ...).
    Raises ``InputError`` with a one-line message for anything that is not a readable image.
    With ``max_side`` both sides end ≤ ``max_side``: a larger image is scaled down, and one whose short side would
    then fall under ``min_side`` is refused from its header (``_scale``). An image ≥ 2·PRE_MARGIN × ``max_side`` is
    shrunk while decoding (never converted to float at full size).
    """

    def body(im: Image.Image, ours: bool) -> tuple[np.ndarray, str | None]:
        factor = _reduction(*_upright_size(im), max_side, min_side)  # refuses a too thin image before decoding
        if factor > 1 and max_side:
            return _load_reduced(im, factor, max_side, ours, min_side)
        return _upright_array(im), None

    (arr, note), notes = _decode(source, body)
    if note:
        notes.append(note)
    elif max_side and max(arr.shape[:2]) > max_side:
        arr, note = resize_max_side(arr, max_side, min_side)
        notes += [note] if note else []
    return arr, notes


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """The source index of each output pixel when PIL resizes ``n_in`` to ``n_out`` by nearest neighbour."""
    step = n_in / n_out
    pos, out = step * 0.5, []
    for _ in range(n_out):  # accumulated in doubles, exactly as ImagingScaleAffine does
        out.append(min(int(pos), n_in - 1))
        pos += step
    return np.array(out, dtype=np.intp)


def load_mask(source: str | os.PathLike | bytes | Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A mask at ``size`` = (H, W): as loaded when it has that size, else its channel mean resized by nearest
    neighbour to H×W×1; a mask ≥ 2·PRE_MARGIN × the size is sampled band by band, never made float at full
    size."""

    def body(im: Image.Image, _ours: bool) -> np.ndarray:
        if max(im.size) < 2 * PRE_MARGIN * max(size):
            mask = _upright_array(im)
            if mask.shape[:2] == tuple(size):
                return mask
            return _nearest_gray(mask, size)
        im.load()
        upright = _UPRIGHT.get(im.getexif().get(0x0112, 1))
        th, tw = (size[1], size[0]) if upright in _SWAPS else size  # sampled in the stored orientation
        rows, cols = _nearest_index(im.height, th), _nearest_index(im.width, tw)
        picked = []
        for y, band in _bands(im, BAND_ROWS, _flatten):
            sel = rows[(rows >= y) & (rows < y + band.height)] - y
            if len(sel):
                picked.append(np.asarray(band)[sel][:, cols])
        small = Image.fromarray(np.concatenate(picked))
        mask = _to_array(small.transpose(upright) if upright is not None else small)
        return (np.round(mask.mean(axis=2) * 255).astype(np.uint8).astype(np.float32) / 255)[:, :, None]

    return _decode(source, body)[0]


def _nearest_gray(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float mask → its channel mean as 8-bit gray, resized (nearest) to ``size`` = (H, W), H×W×1 in [0, 1]."""
    gray = Image.fromarray(np.round(mask.mean(axis=2) * 255).astype(np.uint8))
    return np.asarray(gray.resize((size[1], size[0]), Image.NEAREST), dtype=np.float32)[:, :, None] / 255


def resize_max_side(img: np.ndarray, max_side: int, min_side: int = 1) -> tuple[np.ndarray, str]:
    """Downscale (Lanczos) so both sides are ≤ ``max_side`` (the longer one becomes it); returns the image and a
    note. ``InputError`` when the shorter side is, or would become, under ``min_side`` (crop a long thin image)."""
    h, w = img.shape[:2]
    scale = _scale(w, h, max_side, min_side)
    if scale is None:
        return img, ""
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    chans = [
        np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), mode="F").resize((nw, nh), Image.LANCZOS))
        for c in range(img.shape[2])
    ]
    out = np.clip(np.stack(chans, axis=2), 0, 1).astype(np.float32)
    return out, f"resized from {w}×{h} to {nw}×{nh} (maximum side {max_side} px)"


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask (H×W×C in [0, 1]) resized to ``shape`` (h, w) by nearest neighbour, so it stays two-valued."""
    h, w = shape
    chans = [
        np.asarray(Image.fromarray(mask[:, :, c].astype(np.float32), mode="F").resize((w, h), Image.NEAREST))
        for c in range(mask.shape[2])
    ]
    return np.stack(chans, axis=2)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float H×W×C in [0, 1] → uint8 H×W (grayscale) or H×W×3."""
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return u8[:, :, 0] if u8.ndim == 3 and u8.shape[2] == 1 else u8


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write a float image in [0, 1] as an 8-bit PNG."""
    Image.fromarray(to_uint8(img)).save(path, format="PNG")
