"""The paper's building blocks: Lipschitz-controlled conv, Gaussian upsampling, mean-only batch norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: For this many training steps the power iteration runs at least 16 iterations per step.
POWER_WARMUP_STEPS = 100


def spectral_norm_exact(weight: torch.Tensor) -> torch.Tensor:
    """Largest singular value of ``weight`` reshaped to C_out × (C_in·k·k), by exact SVD."""
    return torch.linalg.matrix_norm(weight.detach().reshape(weight.shape[0], -1).float(), ord=2)


class LipschitzConv2d(nn.Conv2d):
    """Conv whose weight is used as W̃ = W / max(1, σ(W)/λ); σ detached, recomputed every forward.

    ``lipschitz=0`` gives a plain convolution (vanilla DIP). ``sn_method`` is ``"svd"`` (exact, as the
    authors) or ``"power"`` (warm-started power iteration with persistent singular vectors).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        lipschitz: float = 0.0,
        sn_method: str = "power",
        power_iters: int = 2,
        padding_mode: str = "reflect",
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode="zeros" if padding_mode in ("zero", "zeros") else padding_mode,
            bias=bias,
        )
        if lipschitz < 0 or not math.isfinite(lipschitz):
            raise ValueError(f"lipschitz bound must be a finite number ≥ 0, got {lipschitz}")
        if sn_method not in ("svd", "power"):
            raise ValueError(f"sn_method must be 'svd' or 'power', got {sn_method!r}")
        self.lipschitz = float(lipschitz)
        self.sn_method = sn_method
        self.power_iters = int(power_iters)
        self._updates = 0  # training forwards so far (host-side: no sync)
        mat = self.weight.detach().reshape(out_channels, -1)
        # Warm start: the exact leading singular vectors of the initial weight.
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        self.register_buffer("_u", u[:, 0].clone())
        self.register_buffer("_v", vh[0].clone())

    @torch.no_grad()
    def sigma(self) -> torch.Tensor:
        """σ(W) as a 0-d tensor: exact SVD, or ``power_iters`` warm-started power-iteration steps."""
        mat = self.weight.detach().reshape(self.weight.shape[0], -1)
        if self.sn_method == "svd":
            return torch.linalg.matrix_norm(mat, ord=2)
        u, v = self._u, self._v
        # Early steps move the weights fast relative to their size: track harder while they do.
        iters = self.power_iters if self._updates >= POWER_WARMUP_STEPS else max(self.power_iters, 16)
        for _ in range(iters):
            v = F.normalize(mat.t() @ u, dim=0, eps=1e-12)
            u = F.normalize(mat @ v, dim=0, eps=1e-12)
        if self.training:
            self._updates += 1
            self._u.copy_(u)
            self._v.copy_(v)
        return torch.dot(u, mat @ v)

    def effective_weight(self) -> torch.Tensor:
        """The weight the conv uses: W / max(1, σ/λ), with σ a constant for backprop."""
        if self.lipschitz <= 0:
            return self.weight
        scale = torch.clamp(self.sigma() / self.lipschitz, min=1.0)
        return self.weight / scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The 5×5 kernel K(i,j) ∝ exp(−(d_i² + d_j²)/(2σ²)), d_i = (i − 3)/2, summing to 1; σ → 0 is a delta."""
    d = (torch.arange(5, dtype=torch.float64) - 2) / 2
    if sigma <= 0:
        k1 = (d == 0).double()
    else:
        k1 = torch.exp(-(d**2) / (2 * sigma**2))
    k = torch.outer(k1, k1)
    return k / k.sum()


class GaussianUpsample(nn.Module):
    """×2 upsampling by zero insertion then a fixed depthwise 5×5 Gaussian (a strided transposed conv)."""

    def __init__(self, channels: int, sigma: float) -> None:
        super().__init__()
        if sigma < 0 or not math.isfinite(sigma):
            raise ValueError(f"Gaussian σ must be a finite number ≥ 0, got {sigma}")
        self.sigma = float(sigma)
        kernel = gaussian_kernel(self.sigma).float()
        self.register_buffer("kernel", kernel.expand(channels, 1, 5, 5).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=2, output_padding=1, groups=x.shape[1])


class MeanOnlyBatchNorm(nn.Module):
    """y = x − mean_{h,w}(x) + β_c, per sample and channel; no variance, no running statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=(2, 3), keepdim=True) + self.bias.view(1, -1, 1, 1)
