"""Image metrics in torch: PSNR, SSIM, frequency-band correspondence (FBC), blurriness, sharpness.

Public functions take H×W or H×W×C arrays in [0, 1] (numpy or torch) and return Python floats.
The ``*_t`` variants take and return tensors on any device and never leave it (for the run loop).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
BAND_EDGES = (0.2, 0.4, 0.6, 0.8, 1.0)
SHARPNESS_TOP = 1000
SHARPNESS_ALPHA = 0.01

ArrayLike = np.ndarray | torch.Tensor


def to_chw(img: ArrayLike, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """H×W or H×W×C (numpy or torch) → C×H×W tensor; a C×H×W or 1×C×H×W tensor passes through."""
    t = torch.as_tensor(img) if not isinstance(img, torch.Tensor) else img
    t = t.detach().to(dtype)
    if t.dim() == 4:
        t = t[0]
    if t.dim() == 2:
        return t[None]
    if t.dim() == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        return t.permute(2, 0, 1)
    if t.dim() == 3 and t.shape[0] in (1, 3):
        return t
    if t.dim() == 3 and t.shape[-1] in (1, 3):
        return t.permute(2, 0, 1)
    raise ValueError(f"expected an H×W or H×W×C image, got shape {tuple(t.shape)}")


def grayscale_t(chw: torch.Tensor) -> torch.Tensor:
    """g = 0.2989 R + 0.5870 G + 0.1140 B clipped to [0, 1]; a 1-channel image is only clipped."""
    if chw.shape[0] == 3:
        r, g, b = chw[0], chw[1], chw[2]
        gray = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
    else:
        gray = chw[0]
    return gray.clamp(0, 1)


# ---------------------------------------------------------------- PSNR / SSIM


def psnr_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR = 10·log10(1 / mean((a − b)²)) for images in [0, 1]."""
    mse = torch.mean((a - b) ** 2)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


def psnr(a: ArrayLike, b: ArrayLike) -> float:
    """PSNR in dB between two images in [0, 1]."""
    return float(psnr_t(to_chw(a), to_chw(b)))


def _gauss_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004: 11×11 Gaussian σ = 1.5, K1 = 0.01, K2 = 0.03, range 1), channel mean."""
    a = a.reshape(-1, 1, *a.shape[-2:])
    b = b.reshape(-1, 1, *b.shape[-2:])
    size = min(11, a.shape[-1], a.shape[-2])
    size -= 1 - size % 2
    g = _gauss_window(size, 1.5, a.dtype, a.device)
    gx, gy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, gx), gy)

    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a**2
    vb = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return s.mean()


def ssim(a: ArrayLike, b: ArrayLike) -> float:
    """SSIM between two images in [0, 1] (mean over channels)."""
    return float(ssim_t(to_chw(a), to_chw(b)))


# ---------------------------------------------------------------- FBC


def band_index_map(height: int, width: int, bands: int = 5, device=None) -> torch.Tensor:
    """Per frequency of a fftshifted H×W spectrum: its band 0 … bands−1, or −1 beyond the last radius.

    Centre c = (⌊W/2⌋, ⌊H/2⌋); radii r_k = ⌊W/2⌋·k/bands; band k = {r_(k−1) < d ≤ r_k}.
    """
    cx, cy = width // 2, height // 2
    yy = torch.arange(height, dtype=torch.float64, device=device).view(-1, 1) - cy
    xx = torch.arange(width, dtype=torch.float64, device=device).view(1, -1) - cx
    d = torch.sqrt(xx**2 + yy**2)
    idx = torch.full((height, width), -1, dtype=torch.long, device=device)
    edges = [cx * (k + 1) / bands for k in range(bands)]
    for k in reversed(range(bands)):
        idx[d <= edges[k]] = k
    return idx


def amplitude_spectrum_t(chw: torch.Tensor) -> torch.Tensor:
    """|fftshift(FFT2(gray(img)))|."""
    return torch.fft.fftshift(torch.fft.fft2(grayscale_t(chw))).abs()


def spectrum_ratio_t(output_amp: torch.Tensor, reference_amp: torch.Tensor) -> torch.Tensor:
    """H = clip(|F(out)| / (|F(ref)| + 1e-8), 0, 1) per frequency."""
    return (output_amp / (reference_amp + 1e-8)).clamp(0, 1)


class FrequencyBandMeter:
    """FBC against one fixed reference, with the reference spectrum and band map cached (§5)."""

    def __init__(self, reference: torch.Tensor, bands: int = 5) -> None:
        ref = to_chw(reference, reference.dtype if isinstance(reference, torch.Tensor) else torch.float64)
        self.ref_amp = amplitude_spectrum_t(ref)
        h, w = ref.shape[-2:]
        self.bands = bands
        idx = band_index_map(h, w, bands, device=ref.device)
        self.inside = idx >= 0
        self.index = idx[self.inside]
        self.counts = torch.bincount(self.index, minlength=bands).to(ref.dtype)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """FBC_k for k = 1 … bands as a tensor on the reference's device."""
        ratio = spectrum_ratio_t(amplitude_spectrum_t(to_chw(output, self.ref_amp.dtype)), self.ref_amp)
        sums = torch.bincount(self.index, weights=ratio[self.inside], minlength=self.bands)
        return sums / self.counts.clamp_min(1)


def frequency_band_correspondence(output: ArrayLike, reference: ArrayLike, bands: int = 5) -> list[float]:
    """FBC_k = mean over band k of clip(|F(gray out)| / (|F(gray ref)| + 1e-8), 0, 1), k = 1 (low) … bands."""
    out, ref = to_chw(output), to_chw(reference)
    if out.shape[-2:] != ref.shape[-2:]:
        raise ValueError(f"output {tuple(out.shape[-2:])} and reference {tuple(ref.shape[-2:])} differ in size")
    return [float(v) for v in FrequencyBandMeter(ref, bands)(out)]


# ---------------------------------------------------------------- blur / sharpness (§6)


def _box_blur(img: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Zero-padded 'same' box filter of length ``size`` along ``dim`` (scipy convolve2d 'same')."""
    k = torch.full((size,), 1.0 / size, dtype=img.dtype, device=img.device)
    shape = (1, 1, 1, size) if dim == 1 else (1, 1, size, 1)
    pad = (size // 2, size // 2, 0, 0) if dim == 1 else (0, 0, size // 2, size // 2)
    return F.conv2d(F.pad(img[None, None], pad), k.view(shape))[0, 0]


def _abs_diff(img: torch.Tensor, dim: int) -> torch.Tensor:
    """|x[i] − x[i−1]| along ``dim`` with x[−1] = 0 ('same' convolution with [1, −1])."""
    padded = F.pad(img, (1, 0, 0, 0)) if dim == 1 else F.pad(img, (0, 0, 1, 0))
    return (padded.narrow(dim, 1, img.shape[dim]) - padded.narrow(dim, 0, img.shape[dim])).abs()


def blurriness_t(gray: torch.Tensor, size: int = 9) -> torch.Tensor:
    """Perceptual blur metric (Crété-Roffet, box filter 9): B = max over directions of (ΣD_F − ΣV)/ΣD_F."""
    m, n = gray.shape
    s, e = math.ceil(size / 2), size // 2
    result = []
    for dim in (1, 0):
        blurred = _box_blur(gray, size, dim)[s : m - e, s : n - e]
        image = gray[s : m - e, s : n - e]
        mm, nn_ = image.shape
        d_f = _abs_diff(image, dim)[1 : mm - 1, 1 : nn_ - 1]
        d_b = _abs_diff(blurred, dim)[1 : mm - 1, 1 : nn_ - 1]
        v = (d_f - d_b).clamp_min(0)
        s_f = d_f.sum()
        # A flat image has no edges to blur: the limit of the ratio is 1 (fully blurred), not 0/0.
        result.append(torch.where(s_f > 0, (s_f - v.sum()) / s_f.clamp_min(1e-30), torch.ones_like(s_f)))
    return torch.maximum(result[0], result[1])


def mlv_map_t(gray: torch.Tensor) -> torch.Tensor:
    """Maximum local variation on the block I[2:m−1, 2:n−1] padded with zeros: max over 8 neighbours of q − p."""
    block = gray[2:-1, 2:-1]
    padded = F.pad(block, (1, 1, 1, 1))
    h, w = block.shape
    best = None
    for dy in range(3):
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            diff = padded[dy : dy + h, dx : dx + w] - block
            best = diff if best is None else torch.maximum(best, diff)
    return best


def sharpness_t(gray: torch.Tensor) -> torch.Tensor:
    """MLV sharpness: v sorted descending, w_a = v_a·exp(−0.01·a) for a = 2 … 1000, S = sqrt(mean w²).

    Only the top 1001 values matter, so a top-k replaces the full sort.
    """
    values = mlv_map_t(gray).flatten()
    k = min(SHARPNESS_TOP + 1, values.numel())
    top = torch.topk(values, k).values[2:]
    a = torch.arange(2, k, dtype=gray.dtype, device=gray.device)
    w = top * torch.exp(-SHARPNESS_ALPHA * a)
    return torch.sqrt(torch.mean(w**2))


def blurriness(img: ArrayLike) -> float:
    """Perceptual blur metric of the grayscale image (docs/method.md §6), higher = blurrier."""
    return float(blurriness_t(grayscale_t(to_chw(img))))


def sharpness(img: ArrayLike) -> float:
    """MLV sharpness of the grayscale image (docs/method.md §6), higher = sharper."""
    return float(sharpness_t(grayscale_t(to_chw(img))))


def blur_sharpness_ratio(img: ArrayLike) -> float:
    """r = blurriness / sharpness, the signal of the automatic stop."""
    return float(ratio_t(grayscale_t(to_chw(img))))


def ratio_t(gray: torch.Tensor) -> torch.Tensor:
    """r = B / max(S, 1e-8): finite even for a flat image (whose sharpness is 0)."""
    return blurriness_t(gray) / sharpness_t(gray).clamp_min(1e-8)


def noise_sigma_estimate(y: torch.Tensor) -> float:
    """Immerkær's (1996) estimate of additive Gaussian noise σ of an image in [0, 1], per channel, averaged:
    σ = sqrt(π/2) / (6 (H − 2)(W − 2)) · Σ |y ∗ N|, N = [[1, −2, 1], [−2, 4, −2], [1, −2, 1]]."""
    g = y.detach().to("cpu", torch.float64).reshape(-1, 1, *y.shape[-2:])
    if min(g.shape[-2:]) < 3:
        raise ValueError("the noise estimate needs an image of at least 3×3 pixels")
    n = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], dtype=torch.float64)
    return math.sqrt(math.pi / 2) * float(F.conv2d(g, n[None, None]).abs().mean()) / 6
