"""What the app offers and accepts on this machine: defaults and caps for CPU and CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from dip_core import PRESETS, preset, resolve_device
from dip_core.config import preset_control

from . import budget

#: Our CPU demo network: narrower than the CPU preset and a larger Adam step, so that a 128 px image
#: is visibly restored within about 30 s on 2 cores (measured; see docs/app.md, The app).
CPU_DEMO_OVERRIDES = dict(width=24, lr=0.007)
#: The CPU default run's steps: the longest budget live-default tried that a compare run does within a
#: minute on 2 cores (41-54 s on a 2-core AMD EPYC), where λ 1 holds and catches up with vanilla's peak
#: (reports/live_default/README.md).
CPU_ITERATIONS = 3000
#: Every live run ends by itself after this long, keeping what it reached (a public Space must not let one visitor hold
#: it for an hour): 5 minutes. On ZeroGPU the call's own budget ends it sooner (demo/budget.py).
RUN_SECONDS = 300.0
#: ZeroGPU (Hugging Face): runs are GPU calls of a budgeted duration (demo/budget.py).
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
#: The GPU budget (requested seconds, the cap, the deadline, the status line) without ZeroGPU itself, to measure
#: on any GPU what a ZeroGPU visitor would get (benchmarks/app_gpu.py).
GPU_BUDGET = ZERO_GPU or os.environ.get("SPECTRAL_BIAS_LAB_GPU_BUDGET", "") == "1"
#: The GPU default run (compare mode), chosen to declare at most 26 s, which ZeroGPU charges 1.5× (39 s: three runs
#: of an anonymous visitor's 120 s a day; docs/zerogpu.md): the paper's House size and lr; width 64, not
#: 128, buys 850 steps instead of 587 (the step is launch-bound at 256²), by when vanilla has peaked (~step 370)
#: and the controlled network has passed it. lr 0.002 made vanilla collapse (step 90).
GPU_DEFAULT = dict(max_side=256, width=64, iterations=850, lr=0.001)
#: Compare mode's reference network: the original DIP.
VANILLA = dict(lipschitz=0.0, upsample="bilinear")
UPSAMPLE_LABELS = {"bilinear": "bilinear", "nearest": "nearest", "gaussian": "Gaussian"}
AUTO_STOP_LABELS = {
    "off": "off",
    "paper": "paper's rule",
    "relative": "relative (ours, for short budgets)",
    "discrepancy": "noise level (ours, denoising)",
}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Defaults and caps of one device (the UI's slider ranges and the API's accepted ranges), made by keyword."""

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
    # a run ends by itself after this many seconds (keeping its result and downloads); on ZeroGPU the GPU budget
    run_seconds: float | None = None
    # a compare run's two networks as one (dip_core.stacked); SPECTRAL_BIAS_LAB_STACKED=0/1 overrides
    stacked: bool = False
    # the steps in a worker process (demo/worker.py), not a thread of the server's; SPECTRAL_BIAS_LAB_WORKER=0/1
    worker: bool = False


def limits_for(device: str, zero_gpu: bool = GPU_BUDGET) -> Limits:
    """The app's limits for ``cpu`` or ``cuda``, starting from the engine's preset of that name. On ZeroGPU the
    iteration cap is what one network fits in a call at the default size (``demo.budget.max_iterations``)."""
    if device == "cuda":
        base = preset("cuda")
        side, width = GPU_DEFAULT["max_side"], GPU_DEFAULT["width"]
        cap = budget.max_iterations(side, width, runs=1) if zero_gpu else 20_000
        return Limits(
            device="cuda",
            preset="cuda",
            max_side=side,
            max_side_cap=1024,
            iterations=GPU_DEFAULT["iterations"],
            iterations_cap=cap,
            width=width,
            width_cap=256,
            lr=GPU_DEFAULT["lr"],
            every=base.every,
            update_seconds=0.5,
            stacked=stacked_pair(True),
            run_seconds=RUN_SECONDS,
        )
    base = preset("cpu", **CPU_DEMO_OVERRIDES)
    return Limits(
        device="cpu",
        preset="cpu",
        max_side=128,
        max_side_cap=256,
        iterations=CPU_ITERATIONS,
        iterations_cap=5000,
        width=base.width,
        width_cap=64,
        lr=base.lr,
        every=base.every,
        update_seconds=0.5,
        stacked=stacked_pair(False),
        run_seconds=RUN_SECONDS,
        worker=switch("SPECTRAL_BIAS_LAB_WORKER", True),
    )


def stacked_pair(default: bool) -> bool:
    """Whether compare runs stack their networks: the device's default (on for CUDA: one graph for the pair;
    off for CPU, where two threads were 8-18 % faster, benchmarks/RESULTS.md), or SPECTRAL_BIAS_LAB_STACKED."""
    return switch("SPECTRAL_BIAS_LAB_STACKED", default)


def switch(name: str, default: bool) -> bool:
    """An on/off setting from the environment variable ``name`` (1/0, true/false, yes/no, on/off), else ``default``."""
    value = os.environ.get(name, "").strip().lower()
    return default if value == "" else value in ("1", "true", "yes", "on")


LIMITS = limits_for(resolve_device().type)  # the device dip_core resolves "auto" to


def default_control(task: str, limits: Limits = LIMITS) -> dict:
    """The controlled network a run starts with (the UI's λ, its auto box, upsampling and σ; the API's defaults): the
    engine's one rule for this device's preset (``dip_core.config.preset_control``). Where it says ``auto`` the box
    is ticked and the slider keeps the preset's own λ (what runs once the box is cleared); σ 0.5 for the σ slider
    when the rule has none (it applies only once Gaussian upsampling is picked)."""
    control = preset_control(task, limits.preset)
    auto = control["lipschitz"] == "auto"
    lam = PRESETS[limits.preset]["lipschitz"] if auto else control["lipschitz"]
    return {**control, "lipschitz": lam, "lipschitz_auto": auto, "gaussian_sigma": control["gaussian_sigma"] or 0.5}


def device_label() -> str:
    """A short name of where runs happen, for the status line."""
    if LIMITS.device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores)"
