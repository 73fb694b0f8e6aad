"""GPU seconds a run costs, from measured step times: the ``duration`` ZeroGPU is asked for, the caps, and the
one-line refusal of a request over the per-call cap (before any GPU is taken).

seconds = margin · (startup + iterations · runs · step(pixels, width) · factor · (1 + frame overhead)), with
step(p, w) = a + b · p · (w / 128)² ms fitted to two measured image sizes of one GPU; ``factor`` is 1 on that
GPU and UNKNOWN_GPU_FACTOR on any other (ZeroGPU's half RTX Pro 6000 Blackwell has not been measured yet).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

#: The cap of one call (ZeroGPU's default ``duration`` is 60 s; a Space whose visitors have more quota may raise it).
CAP_ENV = "SPECTRAL_BIAS_LAB_GPU_CAP"
DEFAULT_CAP_S = 60.0
#: Names the GPU the Space runs on (ZeroGPU emulates CUDA in the main process, where the name is unknown).
GPU_ENV = "SPECTRAL_BIAS_LAB_GPU"


@dataclass(frozen=True)
class GpuCost:
    """Measured ms per training step of one network (width 128, λ = 1.4, power-iteration σ, metrics every step)
    at 256² and 512², with the CUDA graph and eagerly; ``source`` says where the figures were measured."""

    gpu: str
    source: str
    graph_ms: tuple[float, float]  # (256², 512²)
    eager_ms: tuple[float, float]

    def step_ms(self, pixels: float, width: int, graphed: bool) -> float:
        """a + b · pixels · (width / 128)², the line through the two measured sizes (never below a)."""
        small, large = self.graph_ms if graphed else self.eager_ms
        b = (large - small) / (512**2 - 256**2)
        a = small - b * 256**2
        return a + b * pixels * (width / 128) ** 2


#: Every GPU the step was measured on (benchmarks/RESULTS.md, section GPU).
COSTS = {
    "NVIDIA H100 80GB HBM3": GpuCost(
        "NVIDIA H100 80GB HBM3",
        "reports/gpu_h100/graph_check.json (256²) and step_512.json (512²), torch 2.11.0+cu130",
        graph_ms=(4.97, 11.39),
        eager_ms=(14.03, 15.2),
    ),
}
REFERENCE = COSTS["NVIDIA H100 80GB HBM3"]
#: An unmeasured GPU is assumed this many times slower than the reference (half an RTX Pro 6000 Blackwell has
#: about half the card's ~125 TFLOP/s and 1.8 TB/s; the H100 runs this decoder at ~31 TFLOP/s).
UNKNOWN_GPU_FACTOR = 2.0
#: Seconds a call holds the GPU besides its steps: building the networks, cuDNN's autotuning, the graph capture,
#: the OpenCV baseline, and writing the downloads at the end.
STARTUP_S = 8.0
#: Building a frame (two Plotly figures, the spectrum, an animation frame) on the CPU while the GPU is held, as
#: a fraction of the run's time (the UI is refreshed at most every 0.5 s).
FRAME_OVERHEAD = 0.25
MARGIN = 1.15


def cap_seconds() -> float:
    """The per-call cap: ``SPECTRAL_BIAS_LAB_GPU_CAP`` seconds, else 60."""
    try:
        return max(1.0, float(os.environ.get(CAP_ENV, DEFAULT_CAP_S)))
    except ValueError:
        return DEFAULT_CAP_S


def gpu_name() -> str | None:
    """The GPU runs happen on: ``SPECTRAL_BIAS_LAB_GPU``, else the CUDA device's name when one is really there."""
    name = os.environ.get(GPU_ENV)
    if name:
        return name
    try:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - ZeroGPU's emulated CUDA outside a GPU call
        return None


def cost_table(gpu: str | None = None) -> tuple[GpuCost, float]:
    """The measured table for ``gpu`` (factor 1), or the reference table and UNKNOWN_GPU_FACTOR."""
    gpu = gpu_name() if gpu is None else gpu
    return (COSTS[gpu], 1.0) if gpu in COSTS else (REFERENCE, UNKNOWN_GPU_FACTOR)


def per_iteration_s(pixels: float, width: int, runs: int, graphed: bool = True, gpu: str | None = None) -> float:
    """GPU seconds one iteration of ``runs`` networks costs, frame overhead included."""
    table, factor = cost_table(gpu)
    return runs * table.step_ms(pixels, width, graphed) * factor * (1 + FRAME_OVERHEAD) / 1000


def run_seconds(
    pixels: float, width: int, iterations: int, runs: int, graphed: bool = True, gpu: str | None = None
) -> float:
    """The seconds to request for a run: margin · (startup + iterations · per iteration)."""
    return MARGIN * (STARTUP_S + iterations * per_iteration_s(pixels, width, runs, graphed, gpu))


def max_iterations(
    side: int, width: int, runs: int, cap: float | None = None, graphed: bool = True, gpu: str | None = None
) -> int:
    """The most iterations that fit under the cap at side² pixels."""
    cap = cap_seconds() if cap is None else cap
    return max(0, math.floor((cap / MARGIN - STARTUP_S) / per_iteration_s(side * side, width, runs, graphed, gpu)))


#: ZeroGPU charges (and schedules) a call at ``duration_factor`` × its declared ``duration`` (whole seconds,
#: ``timedelta.seconds``) on every size but ``xlarge``: 1.5 for the default size ``large``, half an "NVIDIA RTX PRO
#: 6000 Blackwell Server Edition" (spaces 0.51.3, spaces/zero/configs.json and client.get_duration_seconds).
ZERO_GPU_DURATION_FACTOR = 1.5
#: An anonymous visitor's daily ZeroGPU quota in GPU seconds (2 minutes; 5 with a free account).
ANONYMOUS_QUOTA_S = 120.0


def quota_seconds(declared: int | float) -> float:
    """The quota a call declared at ``declared`` seconds costs the visitor: declared × the duration factor."""
    return declared * ZERO_GPU_DURATION_FACTOR


def runs_per_day(declared: int | float) -> int:
    """How many calls declared at ``declared`` seconds an anonymous visitor's daily quota pays for."""
    return math.floor(ANONYMOUS_QUOTA_S / quota_seconds(declared))


def quota_note(declared: float) -> str:
    """A status-line fragment: what a call declared at ``declared`` seconds costs of an anonymous visitor's day."""
    return (
        f"quota {round(quota_seconds(declared), 1):g} s of the visitor's {ANONYMOUS_QUOTA_S:g} s a day "
        f"({declared:g} s × {ZERO_GPU_DURATION_FACTOR:g})"
    )


def padded_pixels(size: tuple[int, int], multiple: int = 32) -> int:
    """Pixels the decoder computes for an output of ``size``: each side rounded up to the network's multiple."""
    return math.ceil(size[0] / multiple) * multiple * math.ceil(size[1] / multiple) * multiple
