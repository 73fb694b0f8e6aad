"""The paper's decoder (docs/method.md §2) and its Fourier-feature input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GaussianUpsample, LipschitzConv2d, MeanOnlyBatchNorm, paper_init_

#: The code's per-stage Gaussian σ, coarse to fine, for 5 upsampling stages.
PAPER_GAUSSIAN_SIGMAS = (0.1, 0.1, 0.1, 0.5, 0.5)
UPSAMPLE_MODES = ("bilinear", "nearest", "gaussian")


def per_layer(value: float | Sequence[float], n: int, name: str) -> list[float]:
    """Broadcast one value to ``n`` layers, or check a per-layer list has length ``n``."""
    if isinstance(value, (int, float)):
        return [float(value)] * n
    values = [float(v) for v in value]
    assert len(values) == n, f"{name} needs 1 or {n} values, got {len(values)}"  # RunConfig checked it
    return values


def fourier_input(
    height: int, width: int, channels: int = 32, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = concat(sin 2πu, cos 2πu), u ~ U(0, 1) of shape (channels/2) × height × width."""
    u = torch.rand(1, channels // 2, height, width, generator=generator)
    return torch.cat([torch.sin(2 * torch.pi * u), torch.cos(2 * torch.pi * u)], dim=1)


class ConvBlock(nn.Sequential):
    """[conv3×3 → mean-only BN → LeakyReLU(0.01)] × 2 (the code's "conv2"), each BN with its LeakyReLU fused."""

    def __init__(self, c_in: int, c_out: int, lipschitz: Sequence[float], **conv_kw) -> None:
        layers: list[nn.Module] = []
        for i, lam in enumerate(lipschitz):
            layers += [
                LipschitzConv2d(c_in if i == 0 else c_out, c_out, 3, lipschitz=lam, **conv_kw),
                MeanOnlyBatchNorm(c_out, negative_slope=0.01),
            ]
        super().__init__(*layers)


class Upsample2x(nn.Module):
    """×2 upsampling by interpolation (bilinear or nearest)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2, mode="nearest")


class Decoder(nn.Module):
    """conv2(in→width), then ``depth`` × [upsample ×2 → conv2(width→width)], then conv1×1 → sigmoid.

    ``lipschitz`` is one λ for every 3×3 conv or a list with one λ per conv (2 + 2·depth); the final
    1×1 conv is never controlled. ``gaussian_sigma`` is one σ or one per upsampling stage. The weights are
    drawn from ``generator`` (the global RNG when None).
    """

    def __init__(
        self,
        out_channels: int = 3,
        *,
        width: int = 128,
        depth: int = 5,
        in_channels: int = 32,
        upsample: str = "bilinear",
        lipschitz: float | Sequence[float] = 0.0,
        gaussian_sigma: float | Sequence[float] | None = None,
        padding: str = "reflect",
        sn_method: str = "power",
        power_iters: int = 2,
        conv_algo: str = "direct",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        assert upsample in UPSAMPLE_MODES and 1 <= depth <= 7 and width >= 1, (upsample, depth, width)  # RunConfig
        self.depth = depth
        self.in_channels = in_channels
        lams = per_layer(lipschitz, 2 + 2 * depth, "lipschitz")
        if gaussian_sigma is None:
            sigmas = (
                list(PAPER_GAUSSIAN_SIGMAS[-depth:])
                if depth <= 5
                else [0.1] * (depth - 5) + list(PAPER_GAUSSIAN_SIGMAS)
            )
        else:
            sigmas = per_layer(gaussian_sigma, depth, "gaussian_sigma")
        conv_kw = dict(
            padding_mode=padding, sn_method=sn_method, power_iters=power_iters, conv_algo=conv_algo, generator=generator
        )
        blocks: list[nn.Module] = [ConvBlock(in_channels, width, lams[0:2], **conv_kw)]
        for i in range(depth):
            up = GaussianUpsample(width, sigmas[i]) if upsample == "gaussian" else Upsample2x(upsample)
            blocks += [up, ConvBlock(width, width, lams[2 + 2 * i : 4 + 2 * i], **conv_kw)]
        head = paper_init_(nn.Conv2d(width, out_channels, 1), generator)
        blocks += [head, nn.Sigmoid()]
        self.body = nn.Sequential(*blocks)

    @property
    def multiple(self) -> int:
        """Output sizes are multiples of this (2**depth)."""
        return 2**self.depth

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)

    def lipschitz_convs(self) -> list[LipschitzConv2d]:
        """Every 3×3 conv of the network, in order."""
        return [m for m in self.modules() if isinstance(m, LipschitzConv2d)]
