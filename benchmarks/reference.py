"""The authors' per-step costs, re-implemented from docs/method.md §5-6 in numpy, as their loop pays them.

What the authors' denoising script does after every optimisation step (and what this module repeats):
the output goes to the host as a numpy array; PSNR against the noisy and the clean image; the FBC
against the noisy observation with both FFTs and the ring masks recomputed on every call
(``get_circular_statastic``); the perceptual blur metric (four 'same' 2-D convolutions); and the MLV
sharpness with a Python ``sorted`` over every pixel. scipy is not a dependency here, so the 'same'
convolutions are written with numpy slices (same arithmetic as ``scipy.signal.convolve2d``).
Values match ``tests/data/reference_values`` (tests/test_benchmarks.py checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dip_core import Task
from dip_core.nets import Decoder, fourier_input

from .common import StepClock, sync

GRAY = (0.2989, 0.5870, 0.1140)


def gray(img: np.ndarray) -> np.ndarray:
    """H×W×3 (or H×W×1, H×W) in [0, 1] → H×W float64 grayscale, clipped."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[2] == 3:
        g = GRAY[0] * img[:, :, 0] + GRAY[1] * img[:, :, 1] + GRAY[2] * img[:, :, 2]
    else:
        g = img.reshape(img.shape[0], img.shape[1])
    return np.clip(g, 0, 1)


def convolve2d_same(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``scipy.signal.convolve2d(img, kernel, 'same')`` (zero fill) for a small kernel."""
    kh, kw = kernel.shape
    m, n = img.shape
    full = np.zeros((m + kh - 1, n + kw - 1))
    for i in range(kh):
        for j in range(kw):
            full[i : i + m, j : j + n] += kernel[i, j] * img
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return full[top : top + m, left : left + n]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """10·log10(1 / MSE), data range 1 (``skimage.metrics.peak_signal_noise_ratio``)."""
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def circular_fbc(output: np.ndarray, reference: np.ndarray, bands: int = 5) -> list[float]:
    """FBC (docs/method.md §5), recomputing both spectra and the ring masks on every call, as the authors."""
    a_out = np.abs(np.fft.fftshift(np.fft.fft2(gray(output))))
    a_ref = np.abs(np.fft.fftshift(np.fft.fft2(gray(reference))))
    h = np.clip(a_out / (a_ref + 1e-8), 0, 1)
    rows, cols = h.shape
    cx, cy = cols // 2, rows // 2
    yy, xx = np.ogrid[:rows, :cols]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    out, inner = [], -1.0
    for k in range(bands):
        outer = cx * (k + 1) / bands
        mask = (dist > inner) & (dist <= outer) if k else dist <= outer
        out.append(float(h[mask].mean()))
        inner = outer
    return out


def blurriness(img: np.ndarray, size: int = 9) -> float:
    """Perceptual blur metric (Crété-Roffet), docs/method.md §6, on the grayscale image."""
    g = gray(img)
    m, n = g.shape
    box = np.full((1, size), 1.0 / size)
    b_ver, b_hor = convolve2d_same(g, box), convolve2d_same(g, box.T)
    s, e = math.ceil(size / 2), size // 2
    b_ver, b_hor, g = b_ver[s : m - e, s : n - e], b_hor[s : m - e, s : n - e], g[s : m - e, s : n - e]
    mm, nn = g.shape
    diff = np.array([[1.0, -1.0]])
    crop = (slice(1, mm - 1), slice(1, nn - 1))
    d_fver = np.abs(convolve2d_same(g, diff))[crop]
    d_fhor = np.abs(convolve2d_same(g, diff.T))[crop]
    d_bver = np.abs(convolve2d_same(b_ver, diff))[crop]
    d_bhor = np.abs(convolve2d_same(b_hor, diff.T))[crop]
    v_ver = np.maximum(0, d_fver - d_bver)
    v_hor = np.maximum(0, d_fhor - d_bhor)
    b_v = (d_fver.sum() - v_ver.sum()) / d_fver.sum()
    b_h = (d_fhor.sum() - v_hor.sum()) / d_fhor.sum()
    return float(max(b_v, b_h))


def mlv_map(g: np.ndarray) -> np.ndarray:
    """Maximum local variation of the block g[2:m−1, 2:n−1] padded with one ring of zeros."""
    block = g[2:-1, 2:-1]
    padded = np.pad(block, 1)
    h, w = block.shape
    best = np.full(block.shape, -np.inf)
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                best = np.maximum(best, padded[dy : dy + h, dx : dx + w] - block)
    return best


def sharpness(img: np.ndarray, top: int = 1000, alpha: float = 0.01) -> float:
    """MLV sharpness with a full Python sort of every pixel's value, as the authors' code."""
    values = sorted(mlv_map(gray(img)).reshape(-1).tolist(), reverse=True)
    v = np.array(values[2 : top + 1])
    w = v * np.exp(-alpha * np.arange(2, 2 + len(v)))
    return float(np.sqrt(np.mean(w * w)))


def measure_step(out: torch.Tensor, noisy: np.ndarray, clean: np.ndarray | None) -> dict:
    """Everything the authors' loop computes from one output: host copy, PSNRs, FBC, blur, sharpness."""
    img = out.detach()[0].float().cpu().numpy().transpose(1, 2, 0)
    result = {"psnr_noisy": psnr(img, noisy), "fbc": circular_fbc(img, noisy)}
    if clean is not None:
        result["psnr"] = psnr(img, clean)
    b, s = blurriness(img), sharpness(img)
    result.update(blur=b, sharp=s, ratio=b / s)
    return result


#: The authors' configuration (docs/method.md §1-3): 128 ch, reflection padding, exact SVD, fp32, Adam lr 1e-3.
REFERENCE = dict(width=128, depth=5, padding="reflect", sn_method="svd", precision="fp32", lr=1e-3, channels_last=False)
#: The authors' controlled network and learning rate alone (the engine's numerics left as they are).
NETWORK = dict(width=128, depth=5, upsample="bilinear", gaussian_sigma=None, lipschitz=1.4, lr=1e-3)


@dataclass
class ReferenceRun:
    """The authors' training loop, one step at a time: our decoder in their configuration, then their numpy
    measurements (host copy, FBC, blur, sharpness) every step.

    Kept apart from the engine's ``build``/``Stepper`` on purpose: it is the fixed baseline the speed benchmarks
    compare against, so it must pay what the authors' loop pays (fp32, direct convolutions, no conv-path
    autotuning, no cuDNN benchmark mode, no channels_last or CUDA graphs) whatever the engine's step becomes.
    """

    task: Task
    lipschitz: float = 1.4
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        net = {k: REFERENCE[k] for k in ("width", "depth", "padding", "sn_method")}
        generator = torch.Generator().manual_seed(self.seed)  # the engine's network for the same seed
        self.net = Decoder(self.task.channels, **net, lipschitz=self.lipschitz, generator=generator)
        m = self.net.multiple
        h, w = self.task.out_size
        hp, wp = math.ceil(h / m) * m, math.ceil(w / m) * m
        self.crop = ((hp - h) // 2, (wp - w) // 2, h, w)
        self.z = fourier_input(hp // m, wp // m, self.net.in_channels, torch.Generator().manual_seed(self.seed))
        self.net, self.z = self.net.to(self.device), self.z.to(self.device)
        self.task.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=REFERENCE["lr"])
        self.noisy = self.task.observation[0].cpu().numpy().transpose(1, 2, 0).astype(np.float64)
        clean = self.task.clean
        self.clean = None if clean is None else clean[0].cpu().numpy().transpose(1, 2, 0).astype(np.float64)
        self.last: dict = {}

    def output(self) -> torch.Tensor:
        top, left, h, w = self.crop
        return self.net(self.z)[..., top : top + h, left : left + w]

    def step(self) -> dict:
        """One optimisation step, then the authors' per-step measurements."""
        self.optimizer.zero_grad(set_to_none=True)
        out = self.output()
        loss = self.task.loss(out)
        loss.backward()
        self.optimizer.step()
        self.last = measure_step(out, self.noisy, self.clean)
        return self.last


class ReferenceRunner:
    """``ReferenceRun`` measuring, ``chunk`` steps per call, each step timed to its end (host copy included); the
    PSNR of every step so far in ``psnr``."""

    def __init__(self, task: Task, chunk: int, device: torch.device, lipschitz: float = 1.4) -> None:
        self.ref = ReferenceRun(task, lipschitz=lipschitz, device=device.type)
        self.chunk, self.device, self.clock = chunk, device, StepClock(device)
        self.psnr: list[float] = []

    def __call__(self, steps: int | None = None) -> list[float]:
        """Run ``steps`` steps (default: ``chunk``); the seconds of each."""
        self.clock.reset()
        sync(self.device)
        self.clock.mark()
        for _ in range(self.chunk if steps is None else steps):
            self.psnr.append(self.ref.step().get("psnr"))
            self.clock.mark()
        return self.clock.deltas()
