"""Tasks as data: a forward operator A, an observation y, an optional mask and clean image.

Every task's loss is mean(mask ⊙ (A f(z) − y)²); only ``finish`` (enhancement) and the operator differ.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .errors import InputError
from .io import MIN_SIDE
from .metrics import noise_sigma_estimate

TASKS = ("denoise", "jpeg", "inpaint", "sr", "enhance")
SR_FACTORS = (2, 4, 8)
#: Default level per task: noise σ (0-255), JPEG quality, keep ratio, SR factor, enhancement gain.
DEFAULT_LEVELS = {"denoise": 25.0, "jpeg": 10.0, "inpaint": 0.5, "sr": 4.0, "enhance": 1.0}
LEVEL_RANGES = {
    "denoise": (0.0, 255.0),
    "jpeg": (1.0, 100.0),
    "inpaint": (0.01, 0.99),
    "sr": (2.0, 8.0),
    "enhance": (0.0, 10.0),
}
LEVEL_NAMES = {
    "denoise": "noise σ (0-255)",
    "jpeg": "JPEG quality (1-100)",
    "inpaint": "keep ratio",
    "sr": "super-resolution factor (2, 4 or 8)",
    "enhance": "enhancement gain",
}


class Identity(nn.Module):
    """A x = x (denoising, JPEG deblocking, enhancement)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mask(nn.Module):
    """A x = m ⊙ x with m ∈ {0, 1} (1 = known pixel)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def lanczos2_taps(factor: int) -> torch.Tensor:
    """1-D Lanczos-2 antialiasing kernel for downsampling by ``factor``: 4·factor taps, summing to 1."""
    n = 4 * factor
    t = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / factor
    w = torch.sinc(t) * torch.sinc(t / 2)
    w[t.abs() >= 2] = 0
    return w / w.sum()


class LanczosDownsample(nn.Module):
    """A x = separable Lanczos-2 filter then subsampling by ``factor`` (replicate-padded; differentiable)."""

    def __init__(self, factor: int, channels: int) -> None:
        super().__init__()
        self.factor = factor
        taps = lanczos2_taps(factor).float()
        self.register_buffer("kx", taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1))
        self.register_buffer("ky", taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1))
        self.pad = 3 * factor // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, p, f = x.shape[1], self.pad, self.factor
        x = F.pad(x, (p, p, p, p), mode="replicate")
        x = F.conv2d(x, self.kx.to(x.dtype), stride=(1, f), groups=c)
        return F.conv2d(x, self.ky.to(x.dtype), stride=(f, 1), groups=c)


@dataclass
class Task:
    """One restoration problem: minimise mean(mask ⊙ (A f(z) − y)²) over the decoder's weights."""

    name: str
    level: float
    operator: nn.Module
    observation: torch.Tensor  # 1×C×h×w, y
    out_size: tuple[int, int]  # (H, W) of f(z)
    clean: torch.Tensor | None = None  # 1×C×H×W ground truth of the result, when known
    mask: torch.Tensor | None = None  # 1×C×h×w or 1×1×h×w, 1 = known
    gain: float = 1.0  # enhancement gain k
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.observation.shape[1])

    def loss(self, output: torch.Tensor) -> torch.Tensor:
        """mean((A f − y)²), masked where a mask exists (the DIP loss of every task)."""
        residual = self.operator(output) - self.observation
        if self.mask is not None:
            residual = residual * self.mask
        return torch.mean(residual**2)

    def finish(self, output: torch.Tensor) -> torch.Tensor:
        """The result shown to the user: f(z), or clip(x + k·(x − f(z)), 0, 1) for enhancement."""
        if self.name == "enhance":
            x = self.observation
            return (x + self.gain * (x - output)).clamp(0, 1)
        return output

    def to(self, device: torch.device | str) -> Task:
        """The same task with its tensors on ``device``."""
        self.operator = self.operator.to(device)
        self.observation = self.observation.to(device)
        self.clean = None if self.clean is None else self.clean.to(device)
        self.mask = None if self.mask is None else self.mask.to(device)
        return self


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×C float array in [0, 1] → 1×C×H×W float32 tensor."""
    if img.ndim == 2:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]


def to_image(t: torch.Tensor) -> np.ndarray:
    """1×C×H×W or C×H×W tensor → H×W×C float32 array in [0, 1]."""
    if t.dim() == 4:
        t = t[0]
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def check_level(task: str, level: float | None) -> float:
    """The level to use for ``task``: its default when None, else a validated finite value."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if level is None:
        return DEFAULT_LEVELS[task]
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise InputError(f"{LEVEL_NAMES[task]} must be a number, got {level!r}") from None
    lo, hi = LEVEL_RANGES[task]
    if not math.isfinite(level) or not lo <= level <= hi:
        raise InputError(f"{LEVEL_NAMES[task]} must be between {lo:g} and {hi:g}, got {level:g}")
    if task == "sr" and level not in SR_FACTORS:
        raise InputError(f"super-resolution factor must be 2, 4 or 8, got {level:g}")
    if task == "jpeg" and level != int(level):
        raise InputError(f"JPEG quality must be a whole number, got {level:g}")
    return level


def _check_size(img: np.ndarray, minimum: int, what: str) -> None:
    h, w = img.shape[:2]
    if min(h, w) < minimum:
        raise InputError(f"{what} is {w}×{h} pixels; the smallest supported side is {minimum} pixels")


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode an H×W×C image in [0, 1] as JPEG at ``quality`` (grayscale when C = 1)."""
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    pil = Image.fromarray(u8[:, :, 0] if u8.shape[2] == 1 else u8)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255
    return out[:, :, None] if out.ndim == 2 else out


def bernoulli_mask(shape: tuple[int, int], keep: float, seed: int) -> np.ndarray:
    """H×W×1 mask with each pixel known (1) with probability ``keep`` (shared by all channels)."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < keep).astype(np.float32)[:, :, None]


def binarise_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A user mask image (white = known) as an H×W×1 0/1 array; it must match the image's size."""
    if mask.shape[:2] != size:
        raise InputError(
            f"mask is {mask.shape[1]}×{mask.shape[0]} but the image is {size[1]}×{size[0]}; they must match"
        )
    gray = mask.mean(axis=2) if mask.ndim == 3 else mask
    binary = (gray >= 0.5).astype(np.float32)
    if binary.min() == 1:
        raise InputError("mask marks every pixel as known (white): nothing to inpaint")
    if binary.max() == 0:
        raise InputError("mask marks every pixel as missing (black): nothing to fit")
    return binary[:, :, None]


def make_task(
    name: str,
    clean: np.ndarray,
    level: float | None = None,
    *,
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> Task:
    """Degrade a clean H×W×C image in [0, 1] into a task whose ground truth is known."""
    level = check_level(name, level)
    clean = _as_hwc(clean)
    _check_size(clean, MIN_SIDE, "image")
    x = to_tensor(clean)
    h, w = clean.shape[:2]
    if name == "denoise":
        rng = np.random.default_rng(seed)
        noisy = np.clip(clean + rng.normal(0, level / 255, clean.shape), 0, 1).astype(np.float32)
        return Task(name, level, Identity(), to_tensor(noisy), (h, w), clean=x)
    if name == "jpeg":
        return Task(name, level, Identity(), to_tensor(jpeg_compress(clean, int(level))), (h, w), clean=x)
    if name == "inpaint":
        m = binarise_mask(mask, (h, w)) if mask is not None else bernoulli_mask((h, w), level, seed)
        mt = to_tensor(m)
        return Task(name, level, Mask(mt), x * mt, (h, w), clean=x, mask=mt)
    if name == "sr":
        f = int(level)
        hh, ww = (h // f) * f, (w // f) * f
        _check_size(clean[:hh, :ww], MIN_SIDE, f"image cropped to a multiple of {f}")
        if min(hh, ww) // f < 8:
            raise InputError(f"image is too small for ×{f} super-resolution (low-res side under 8 pixels)")
        x = x[..., :hh, :ww]
        op = LanczosDownsample(f, x.shape[1])
        with torch.no_grad():
            y = op(x).clamp(0, 1)
        return Task(name, level, op, y, (hh, ww), clean=x)
    # enhance: y = x, the result is clip(x + k·(x − f(z))); no ground truth of the enhanced image
    return Task(name, level, Identity(), x, (h, w), gain=level)


def observed_task(
    name: str, observation: np.ndarray, level: float | None = None, *, mask: np.ndarray | None = None
) -> Task:
    """A task from an already degraded image y (no clean image; PSNR unknown).

    For inpainting, ``mask`` (white = known) is required; for SR, ``level`` is the factor to upscale by.
    For denoising, ``level=None`` means the noise σ estimated from the image (Immerkær's estimate).
    """
    estimate_sigma = name == "denoise" and level is None
    level = check_level(name, level)
    y_img = _as_hwc(observation)
    h, w = y_img.shape[:2]
    y = to_tensor(y_img)
    if name in ("denoise", "jpeg"):
        _check_size(y_img, MIN_SIDE, "image")
        task = Task(name, level, Identity(), y, (h, w))
        if name == "denoise":
            estimate = noise_sigma_estimate(y) * 255
            if estimate_sigma:
                task.level = round(min(estimate, 255.0), 1)
                task.notes.append(f"noise σ estimated from the image: {task.level:g} (Immerkær's estimate)")
            elif abs(estimate - level) > max(3.0, 0.3 * level):
                task.notes.append(
                    f"the image's noise looks like σ ≈ {estimate:.0f} (Immerkær's estimate), not the {level:g} set; "
                    "only the noise-level auto-stop uses σ"
                )
        return task
    if name == "inpaint":
        _check_size(y_img, MIN_SIDE, "image")
        if mask is None:
            raise InputError("an already-degraded inpainting image needs a mask (white = known pixels)")
        mt = to_tensor(binarise_mask(_as_hwc(mask), (h, w)))
        return Task(name, level, Mask(mt), y * mt, (h, w), mask=mt)
    if name == "sr":
        _check_size(y_img, 8, "low-resolution image")
        f = int(level)
        return Task(name, level, LanczosDownsample(f, y.shape[1]), y, (h * f, w * f))
    _check_size(y_img, MIN_SIDE, "image")
    return Task(name, level, Identity(), y, (h, w), gain=level)


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise InputError(f"expected an H×W, H×W×1 or H×W×3 image, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise InputError("image contains NaN or infinite values")
    return np.clip(img, 0, 1)
