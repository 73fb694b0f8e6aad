"""What the app offers and accepts on this machine: defaults and caps for CPU and CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from dip_core import preset

#: Our CPU demo network: narrower than the CPU preset and a larger Adam step, so that a 128 px image
#: is visibly restored within about 30 s on 2 cores (measured; see the README section "The app").
CPU_DEMO_OVERRIDES = dict(width=24, lr=0.007)
#: Compare mode's reference network: the original DIP.
VANILLA = dict(lipschitz=0.0, upsample="bilinear")
UPSAMPLE_LABELS = {"bilinear": "bilinear", "nearest": "nearest", "gaussian": "Gaussian"}
AUTO_STOP_LABELS = {
    "off": "off",
    "paper": "paper's rule",
    "relative": "relative (ours, for short budgets)",
    "discrepancy": "noise level (ours, denoising)",
}


@dataclass(frozen=True)
class Limits:
    """Defaults and caps of one device (the UI's slider ranges and the API's accepted ranges)."""

    device: str  # cpu | cuda
    preset: str
    max_side: int  # default maximum image side (larger images are downscaled)
    max_side_cap: int
    iterations: int
    iterations_cap: int
    width: int
    width_cap: int
    lr: float
    every: int  # snapshot interval of the engine (scaled down for large CPU images)
    update_seconds: float  # the UI is refreshed at most this often (and at every snapshot below it)
    lipschitz_cap: float = 5.0
    sigma_cap: float = 3.0
    max_frames: int = 80  # frames kept for the animation


def limits_for(device: str) -> Limits:
    """The app's limits for ``cpu`` or ``cuda``, starting from the engine's preset of that name."""
    if device == "cuda":
        base = preset("cuda")
        return Limits("cuda", "cuda", 512, 1024, base.iterations, 20_000, base.width, 256, base.lr, base.every, 0.5)
    base = preset("cpu", **CPU_DEMO_OVERRIDES)
    return Limits("cpu", "cpu", 128, 256, 2000, 5000, base.width, 64, base.lr, base.every, 0.5)


LIMITS = limits_for("cuda" if torch.cuda.is_available() else "cpu")


def device_label() -> str:
    """A short name of where runs happen, for the status line."""
    if LIMITS.device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores)"
