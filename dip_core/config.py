"""A run's settings: ``RunConfig``, each field with its accepted range or choices (the one place the engine,
CLI and app read them), and the named presets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from .checks import Range
from .errors import InputError, shown
from .layers import CONV_ALGOS
from .nets import UPSAMPLE_MODES
from .stopping import STOP_RULES
from .tasks import TASKS

MAX_ITERATIONS = 100_000
#: How a run's bound moves: fixed at λ, or learned per layer from λ (``dip_core.bound.LearnedBounds``)
BOUND_RULES = ("fixed", "learned")


def setting(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    integer: bool = False,
    choices: Sequence[str] = (),
    per_layer: bool = False,
    word: str | None = None,
    help: str = "",
) -> Any:
    """A RunConfig field with its ``Range`` [lo, hi] (or ``choices``); ``per_layer``: a list of such numbers is
    accepted too (one per layer); ``word``: a word accepted instead of a number (``lipschitz="auto"``)."""
    accepted = Range(lo, hi, integer) if lo is not None and hi is not None else None
    meta = dict(range=accepted, choices=tuple(choices), per_layer=per_layer, word=word, help=help)
    return field(default=default, metadata=meta)


def convs(depth: int) -> int:
    """How many 3×3 convolutions a decoder of ``depth`` stages has (one λ each): two per stage and two first."""
    return 2 + 2 * depth


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run besides the task: the paper's settings (docs/method.md) with vanilla DIP's
    convolutions (λ = 0). Checked when made (every field against its range or choices; a per-layer list for its
    length), so a RunConfig that exists is valid; frozen, so it stays so. The presets, which the CLI, the app and
    sweeps start from, are controlled networks."""

    iterations: int = setting(10_000, 1, MAX_ITERATIONS, integer=True, help="optimisation steps")
    every: int = setting(50, 1, MAX_ITERATIONS, integer=True, help="a snapshot every this many steps")
    seed: int = setting(0, 0, 2**32 - 1, integer=True, help="seed of the network, its input, the noise and mask")
    lr: float = setting(1e-3, 1e-6, 1.0, help="Adam learning rate")
    width: int = setting(128, 4, 512, integer=True, help="channels of every layer")
    depth: int = setting(5, 1, 7, integer=True, help="upsampling stages")
    upsample: str = setting("bilinear", choices=UPSAMPLE_MODES)
    lipschitz: float | Sequence[float] | str = setting(
        0.0, 0, 100, per_layer=True, word="auto", help="λ bound (0 = vanilla DIP; auto: the task's rule sets it)"
    )
    # how the bound moves during the run: fixed at λ, or learned per layer from λ (dip_core.bound.LearnedBounds);
    # ``lipschitz="auto"`` sets it per task (``autotune.resolve``: the rule that met the bar, dip_core/bound.py)
    bound: str = setting("fixed", choices=BOUND_RULES)
    gaussian_sigma: float | Sequence[float] | None = setting(
        None, 0, 10, per_layer=True, help="σ of Gaussian upsampling (None: the code's per stage)"
    )
    padding: str = setting("reflect", choices=("reflect", "zeros"))
    sn_method: str = setting("svd", choices=("svd", "power"), help="σ(W) by exact SVD or power iteration")
    power_iters: int = setting(2, 1, 100, integer=True)
    precision: str = setting("fp32", choices=("fp32", "bf16"), help="bf16: autocast of the forward pass")
    channels_last: bool = False
    auto_stop: str = setting("off", choices=STOP_RULES, help="paper | relative (ours) | discrepancy (ours, denoising)")
    reg_noise_std: float = setting(0.0, 0, 1, help="original DIP trick: z + N(0, std²) each step")
    ema: float = setting(0.0, 0, 0.9999, help="original DIP trick: moving average of the outputs (0 = off)")
    backtrack: bool = False  # original DIP trick: restore a copy of the weights when the loss jumps
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    measure_every_step: bool = False  # compute FBC/blur/sharpness each step (benchmarks, faithful cost)
    # direct | winograd (3×3 convs by NNPACK on CPU) | auto (the fastest of direct, winograd and direct with
    # channels_last, timed on this CPU at first use: dip_core/autotune.py)
    conv_algo: str = setting("direct", choices=("auto", *CONV_ALGOS))
    cuda_graph: bool = False  # CUDA: replay the whole step as one captured graph (eager fallback)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata and not (value is None and f.default is None):
                if isinstance(value, str) and not f.metadata["choices"] and value != f.metadata["word"]:
                    word = f" or {f.metadata['word']}" if f.metadata["word"] else ""
                    raise InputError(f"{f.name} must be a number{word}, got {shown(value)}")  # converted at the edges
                object.__setattr__(self, f.name, self.check(f.name, value))
        for name, n, what in (
            ("lipschitz", convs(self.depth), "3×3 convolution"),
            ("gaussian_sigma", self.depth, "upsampling stage"),
        ):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) not in (1, n):
                raise InputError(
                    f"{name} takes one value or {n} (one per {what} at depth {self.depth}), got {len(value)}"
                )

    @classmethod
    def check(cls, name: str, value: Any, hi: float | None = None) -> Any:
        """``value`` checked against field ``name``'s range (``hi`` narrows it) or choices; numbers given as
        text are converted; a per-layer list becomes a tuple. Else ``InputError`` (one line)."""
        meta = _FIELDS[name].metadata
        if meta["word"] is not None and value == meta["word"]:
            return value
        if meta["word"] is not None and isinstance(value, str):  # text: a number, or the word misspelt
            try:
                float(value)
            except ValueError:
                raise InputError(f"{name} must be a number or {meta['word']}, got {shown(value)}") from None
        if meta["choices"]:
            if value not in meta["choices"]:
                raise InputError(f"{name} must be one of {', '.join(meta['choices'])}, got {shown(value)}")
            return value
        if meta["per_layer"] and isinstance(value, (list, tuple)):
            return tuple(cls.check(name, v, hi) for v in value)
        return meta["range"].narrow(hi).check(name, value)

    def to_dict(self) -> dict:
        """A JSON-ready dict (re-loadable with ``RunConfig.from_dict``)."""
        d = asdict(self)
        for k in ("lipschitz", "gaussian_sigma"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Build from a dict, ignoring unknown keys (checked as any RunConfig)."""
        return cls(**{k: v for k, v in d.items() if k in _FIELDS})


_FIELDS = {f.name: f for f in fields(RunConfig)}


def field_bounds(name: str) -> tuple[float, float]:
    """The accepted (lo, hi) of a numeric RunConfig field."""
    accepted = range_of(name)
    return accepted.lo, accepted.hi


def range_of(name: str) -> Range:
    """The ``Range`` of a numeric RunConfig field."""
    return _FIELDS[name].metadata["range"]


def choices(name: str) -> tuple[str, ...]:
    """The accepted values of a RunConfig field that takes one of a few names."""
    return _FIELDS[name].metadata["choices"]


#: The CPU scale's control (λ, upsampling, σ): chosen on two images and confirmed on two others, at the app's CPU
#: network, by ``python -m benchmarks live-default`` (reports/live_default/README.md).
CPU_CONTROL = dict(lipschitz=1.0, upsample="bilinear", gaussian_sigma=None)
#: Named starting points. ``paper``: the authors' configuration. ``cpu``/``cuda``: fast presets whose
#: shortcuts were checked against the paper's curves (benchmarks/RESULTS.md).
#: Each is a controlled network: on the paper's scale the paper's λ (1.4: denoising and deblocking; the CLI uses the
#: task's own), on the CPU preset's scale the control chosen by reports/live_default/README.md (and why).
PRESETS: dict[str, dict] = {
    "paper": dict(
        width=128, padding="reflect", sn_method="svd", precision="fp32", iterations=10_000, every=50, lipschitz=1.4
    ),
    "cpu": dict(
        **CPU_CONTROL,
        width=48,  # width and lr chosen by benchmarks.time_to_quality on 2 cores (benchmarks/RESULTS.md)
        lr=0.003,
        padding="zeros",
        sn_method="power",
        conv_algo="auto",  # Winograd won on an AMD EPYC, oneDNN's direct conv on an Intel Xeon: timed per machine
        precision="fp32",
        channels_last=False,  # (auto sets it when it picks direct+channels_last)
        iterations=1500,
        every=10,
    ),
    "cuda": dict(
        width=128,
        padding="reflect",
        sn_method="power",
        precision="fp32",
        channels_last=False,
        cuda_graph=True,  # checked on an H100: same curve as eager, 2.8× faster at 256² (benchmarks/RESULTS.md)
        iterations=10_000,
        every=50,
        lipschitz=1.4,
    ),
}
#: The presets on the paper's scale, where the paper's λ for each task applies.
PAPER_SCALE = ("paper", "cuda")
PRESET_NAMES = ("auto", *PRESETS)


def preset_control(task: str, preset: str) -> dict:
    """The controlled network when none is asked for (λ, upsampling, σ), the one rule of the CLI's ``run`` and
    ``sweep``, the API and the app: on the paper's scale (``paper``, ``cuda``) the paper's λ for the task with
    bilinear upsampling; on the CPU preset ``lipschitz="auto"`` for a task whose rule met issue 35's bar there
    (``TaskSpec.auto.met``: denoising, JPEG), else its own control (``CPU_CONTROL``, chosen at that scale).
    ``preset`` is a resolved name (``autotune.preset_name`` makes ``auto`` one)."""
    if preset not in PRESETS:
        raise ValueError(f"preset_control takes a resolved preset name, got {preset!r} (autotune.preset_name)")
    if preset in PAPER_SCALE:  # the rules were judged at the CPU scale only: the paper's λ here until they are
        return dict(lipschitz=TASKS[task].paper_lipschitz, upsample="bilinear", gaussian_sigma=None)
    return {**CPU_CONTROL, "lipschitz": "auto"} if TASKS[task].auto.met else dict(CPU_CONTROL)


def check_device(name: str) -> str:
    """``name`` (``cpu`` or ``cuda``) if it can run here; asking for CUDA without a GPU is an input error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA GPU is available")
    return name
