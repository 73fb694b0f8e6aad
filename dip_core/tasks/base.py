"""What every task shares: the ``Task`` a run fits, the ``TaskSpec`` each task module fills in, the operators.

A task is y = A x (+ noise): the run minimises mean((A f(z) − y)²) over the decoder's weights; only the
operator A, how y is made or read, and the post-processing (enhancement) differ from task to task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..baselines import Method
from ..checks import Range
from ..errors import InputError
from ..io import MIN_SIDE


# ---------------------------------------------------------------------------------------------- operators A
class Identity(nn.Module):
    """A x = x (denoising, JPEG deblocking, enhancement)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mask(nn.Module):
    """A x = m ⊙ x with m ∈ {0, 1} (1 = known pixel); the operator owns its mask."""

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


# ---------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class Level:
    """A task's degradation level (σ, quality, keep ratio, factor, gain): its default and accepted range, which
    the engine, CLI, API and UI all read; ``slider`` is the app's (min, max, step), narrower where useful."""

    name: str  # "noise σ (0-255)": how errors and the UI name it
    default: float
    lo: float
    hi: float
    slider: tuple[float, float, float] | None = None  # None: the UI offers ``choices`` instead
    choices: tuple[int, ...] = ()  # the only values allowed (super-resolution factors), when not empty
    integer: bool = False
    short: str = ""  # the name in the whole-number/choices errors ("JPEG quality")
    info: str = ""  # what the level does to the curves: the app's one-line help under its widget

    def check(self, value: object) -> float:
        """``value`` as a valid level, else ``InputError`` (one line); None gives the default."""
        if value is None:
            return self.default
        level = Range(self.lo, self.hi).check(self.name, value)
        if self.choices and level not in self.choices:
            *head, tail = (str(c) for c in self.choices)
            raise InputError(f"{self.short or self.name} must be {', '.join(head)} or {tail}, got {level:g}")
        if self.integer and level != int(level):
            raise InputError(f"{self.short or self.name} must be a whole number, got {level:g}")
        return level


@dataclass(frozen=True)
class Auto:
    """What ``lipschitz="auto"`` runs for a task (issue 35; ``dip_core.bound.auto_control``): ``rule`` is "fixed" (at
    ``lipschitz``, the paper's λ when None), "learned" (per-layer bounds from the paper's λ, penalty α ``penalty``) or
    "detail" (denoising: λ 1 or 1.4 from the image's detail energy); ``why`` is the line that says so."""

    rule: str = "fixed"
    lipschitz: float | None = None
    penalty: float = 3e-4  # the learned bounds' α, whenever this task's bounds are learned (``bound="learned"``)
    why: str = "λ auto: no rule was judged for this task; it runs the paper's λ {lam}"  # {lam}: the λ it runs

    @property
    def met(self) -> bool:
        """Whether a rule met issue 35's bar for this task (at the CPU scale): then ``auto`` is its default there
        (``dip_core.config.preset_control``); a task where none did runs a fixed λ."""
        return self.rule != "fixed"


@dataclass(frozen=True)
class TaskSpec:
    """One restoration task. Each module of ``dip_core/tasks/`` subclasses it and registers one instance; the
    defaults here are the plain case: A = identity, y given, the result is f(z), no known noise level."""

    name: str  # the key: "denoise"
    label: str  # what the UI calls it: "Denoising"
    level: Level
    paper_lipschitz: float  # the λ the paper uses for the controlled network
    needs_mask: bool = False  # an observed image needs a mask (white = known), and the UI offers a mask editor
    estimates_level: bool = False  # an observed image without a level has it estimated (denoising's σ)
    order: int = 100  # where the CLI and the UI list it
    auto: Auto = Auto()  # what ``lipschitz="auto"`` runs (dip_core/bound.py)

    def degrade(self, clean: np.ndarray, level: float, mask: np.ndarray | None, seed: int) -> Task:
        """The task made from a clean H×W×C image in [0, 1] (checked, at least MIN_SIDE a side)."""
        return Task(self, level, Identity(), to_tensor(clean), clean.shape[:2], clean=to_tensor(clean))

    def observe(self, y: np.ndarray, level: float | None, mask: np.ndarray | None) -> Task:
        """The task from an already degraded H×W×C image y (no clean image). ``level`` None: the default."""
        check_size(y, MIN_SIDE, "image")
        return Task(self, self.level.check(level), Identity(), to_tensor(y), y.shape[:2])

    def finish(self, task: Task, output: torch.Tensor) -> torch.Tensor:
        """The result shown to the user from the network's output f(z): f(z) itself unless overridden."""
        return output

    def noise_sigma(self, level: float) -> float | None:
        """The known noise σ of y in [0, 1] units (the discrepancy auto-stop's), or None."""
        return None

    def observed_scale(self, level: float) -> int:
        """How many times larger than y the result is (a super-resolution factor; 1 elsewhere)."""
        return 1

    def describe(self, task: Task, mask_given: bool = False) -> str:
        """A few words on the observation for its panel, e.g. "σ 25" or "JPEG q10"."""
        return f"{self.level.name} {task.level:g}"

    def baseline(self, task: Task) -> tuple[np.ndarray, Method]:
        """The classical (OpenCV) result from the observation (and mask) only, and what it is (``Method``)."""
        raise NotImplementedError(f"no classical baseline for {self.name}")


@dataclass
class Task:
    """One restoration problem: minimise mean((A f(z) − y)²) over the decoder's weights (A masks for inpainting)."""

    spec: TaskSpec
    level: float
    operator: nn.Module  # A
    observation: torch.Tensor  # 1×C×h×w, y
    out_size: tuple[int, int]  # (H, W) of f(z)
    clean: torch.Tensor | None = None  # 1×C×H×W ground truth of the result, when known
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channels(self) -> int:
        return int(self.observation.shape[1])

    @property
    def mask(self) -> torch.Tensor | None:
        """The operator's mask (1 = known), if it has one."""
        return getattr(self.operator, "mask", None)

    @property
    def noise_sigma(self) -> float | None:
        """The known noise σ of y in [0, 1] units, or None (see ``TaskSpec.noise_sigma``)."""
        return self.spec.noise_sigma(self.level)

    def loss(self, output: torch.Tensor) -> torch.Tensor:
        """mean((A f − y)²): the DIP loss of every task."""
        return torch.mean((self.operator(output) - self.observation) ** 2)

    def finish(self, output: torch.Tensor) -> torch.Tensor:
        """The result shown to the user (``TaskSpec.finish``): f(z), or the enhanced image."""
        return self.spec.finish(self, output)

    def to(self, device: torch.device | str) -> Task:
        """The same task with its tensors on ``device``."""
        self.operator = self.operator.to(device)
        self.observation = self.observation.to(device)
        self.clean = None if self.clean is None else self.clean.to(device)
        return self


# ---------------------------------------------------------------------------------------------- helpers
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


def check_size(img: np.ndarray, minimum: int, what: str) -> None:
    """``InputError`` when the image's short side is under ``minimum`` pixels."""
    h, w = img.shape[:2]
    if min(h, w) < minimum:
        raise InputError(f"{what} is {w}×{h} pixels; the smallest supported side is {minimum} pixels")


def as_hwc(img: np.ndarray) -> np.ndarray:
    """An H×W, H×W×1 or H×W×3 finite image as H×W×C float32 clipped to [0, 1], else ``InputError``."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise InputError(f"expected an H×W, H×W×1 or H×W×3 image, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise InputError("image contains NaN or infinite values")
    return np.clip(img, 0, 1)
