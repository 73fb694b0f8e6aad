"""Replays: precomputed runs of the paper's experiments in a small committed format, written by the sweep
machinery (``python -m benchmarks replays``) and played by the app with no computation at view time.

On disk, under one root (``assets/replays/``)::

    manifest.json                     scale, command, experiments and their lanes
    <experiment>/clean.webp, observed.webp, baseline.webp
    <experiment>/<lane>/curves.json   iter, psnr, ssim, loss, ratio, fbc (5 bands) at every snapshot
    <experiment>/<lane>/<iter>.webp   ≤ MAX_FRAMES result frames
    <experiment>/<lane>/spectrum.npz  the spectrum ratio at each frame, uint8 (ratio · 255), ≤ SPECTRUM_SIDE a side
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .bound import auto_control
from .io import to_uint8
from .metrics import amplitude_spectrum_t, spectrum_ratio_t, to_chw
from .tasks import Task, baseline, to_image, to_tensor

FORMAT = 1
MAX_FRAMES = 40
FRAME_SIDE = 256  # frames are written at most this many pixels a side
SPECTRUM_SIDE = 64  # replays store the spectrum pooled to this (the live view uses 96)
QUALITY = 90  # WebP quality of frames and images


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: a task, its level, and an image (and mask) relative to the data folder."""

    name: str
    label: str
    task: str
    level: float
    image: str
    mask: str | None = None


@dataclass(frozen=True)
class Lane:
    """One network configuration of every experiment."""

    name: str  # as dip_core.sweep.variant_name spells it
    label: str
    lipschitz: float | str  # a λ, or "auto" (dip_core/bound.py: resolved per experiment)
    upsample: str = "bilinear"
    gaussian_sigma: float | None = None


#: The paper's experiments (its public code's data, laid out as in the project's data folder).
EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("denoise_house", "Denoising σ 25 · House", "denoise", 25, "denoising/image_House256rgb.png"),
    Experiment("denoise_peppers", "Denoising σ 25 · Peppers", "denoise", 25, "denoising/image_Peppers512rgb.png"),
    Experiment("denoise_f16", "Denoising σ 25 · F16", "denoise", 25, "denoising/image_F16_512rgb.png"),
    Experiment("jpeg_monarch", "JPEG quality 10 · Monarch (LIVE1)", "jpeg", 10, "deblocking/LIVE1/monarch.png"),
    Experiment(
        "inpaint_barbara",
        "Inpainting 50 % random pixels · Barbara",
        "inpaint",
        0.5,
        "inpainting/bernoulli/img/barbara.png",
        "inpainting/bernoulli/mask/barbara.png",
    ),
    Experiment(
        "inpaint_vase",
        "Inpainting a region · Vase",
        "inpaint",
        0.5,
        "inpainting/region/vase.png",
        "inpainting/region/vase_mask.png",
    ),
    Experiment("sr_zebra", "Super-resolution ×4 · Zebra", "sr", 4, "super_resolution/zebra_GT.png"),
    Experiment("enhance_tulips", "Detail enhancement · Tulips", "enhance", 1, "enhancement/tulips.png"),
)
#: Vanilla DIP and the paper's knobs: λ with bilinear upsampling, and Gaussian upsampling's σ with the λ the
#: authors' README pairs with it (1.8; docs/method.md §3).
LANES: tuple[Lane, ...] = (
    Lane("vanilla", "vanilla DIP (λ = 0)", 0.0),
    Lane("lam1", "λ = 1", 1.0),
    Lane("lam1.4", "λ = 1.4", 1.4),
    Lane("lam2", "λ = 2", 2.0),
    Lane("lam3", "λ = 3", 3.0),
    Lane("lam1.8_gauss0.5", "λ = 1.8, Gaussian σ = 0.5", 1.8, "gaussian", 0.5),
    Lane("lam1.8_gauss1", "λ = 1.8, Gaussian σ = 1", 1.8, "gaussian", 1.0),
    Lane("lamauto", "λ auto", "auto"),  # where it runs a fixed λ of a lane above, the manifest says same_as
)


def ran_as(lane: Lane, task: Task, lanes: Sequence[Lane] = LANES) -> tuple[Lane, str | None]:
    """A lane as it runs on ``task``: ``auto`` named by what it resolves to ("λ auto: λ = 1", "λ auto: learned from
    λ = 1.4"), with the fixed-λ lane of ``lanes`` it then is (a replay shows that lane's run: ``same_as``), else
    None."""
    if lane.lipschitz != "auto":
        return lane, None
    control = auto_control(task)[0]
    lam, fixed = control["lipschitz"], control["bound"] == "fixed"
    same = next((x.name for x in lanes if fixed and x.lipschitz == lam and x.upsample == "bilinear"), None)
    return replace(lane, label=f"λ auto: {'λ =' if fixed else 'learned from λ ='} {lam:g}"), same


def frame_every(iterations: int, every: int, frames: int = MAX_FRAMES) -> int:
    """The frame interval: a multiple of the snapshot interval that keeps at most ``frames`` frames after step 1."""
    return every * max(1, math.ceil(iterations / (frames - 1) / every))


class SpectrumView:
    """|F(A f)| / |F(y)| per frequency: a result mapped into observation space against the observation."""

    def __init__(self, task: Task, side: int) -> None:
        self.side = side
        self.operator = copy.deepcopy(task.operator).to("cpu").float()
        self.ref = amplitude_spectrum_t(to_chw(task.observation.detach().to("cpu", torch.float32)[0]))

    def __call__(self, fit: np.ndarray) -> np.ndarray:
        """The clipped amplitude ratio of the network's output f as an h×w array in [0, 1] (average-pooled to at
        most ``side`` a side)."""
        with torch.no_grad():
            ratio = spectrum_ratio_t(amplitude_spectrum_t(to_chw(self.operator(to_tensor(fit))[0])), self.ref)
        h, w = ratio.shape
        if max(h, w) > self.side:
            size = (max(1, round(h * self.side / max(h, w))), max(1, round(w * self.side / max(h, w))))
            ratio = F.adaptive_avg_pool2d(ratio[None, None], size)[0, 0]
        return ratio.float().numpy()


def save_webp(img: np.ndarray, path: Path, side: int = FRAME_SIDE) -> None:
    """An H×W×C float image in [0, 1] as a WebP of at most ``side`` pixels a side."""
    u8 = to_uint8(img)
    pil = Image.fromarray(u8)
    if max(pil.size) > side:
        scale = side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.LANCZOS)
    pil.save(path, "WEBP", quality=QUALITY, method=6)


def write_images(task: Task, folder: Path) -> None:
    """An experiment's still images: the clean image (when known), the observation and the OpenCV baseline."""
    folder.mkdir(parents=True, exist_ok=True)
    if task.clean is not None:
        save_webp(to_image(task.clean), folder / "clean.webp")
    save_webp(to_image(task.observation), folder / "observed.webp")
    classical = baseline(task)
    if classical.image is not None:
        save_webp(classical.image, folder / "baseline.webp")
    (folder / "baseline.json").write_text(json.dumps(classical.summary()))


class FrameWriter:
    """Keeps a run's frames (result images and spectrum ratios) at every ``interval`` steps and at its end."""

    def __init__(self, task: Task, folder: Path, interval: int) -> None:
        self.folder, self.interval = Path(folder), interval
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spectrum = SpectrumView(task, SPECTRUM_SIDE)
        self.iters: list[int] = []
        self.maps: list[np.ndarray] = []

    def add(self, snap) -> None:
        """Keep this snapshot if it is on the frame grid (or the first or last one)."""
        if snap.image is None or not (snap.iter == 1 or snap.iter % self.interval == 0 or snap.done):
            return
        if self.iters and self.iters[-1] == snap.iter:
            return
        save_webp(snap.image, self.folder / f"{snap.iter:05d}.webp")
        fit = snap.fit if snap.fit is not None else snap.image
        self.maps.append(np.round(self.spectrum(fit) * 255).astype(np.uint8))
        self.iters.append(snap.iter)

    def close(self) -> None:
        """Write the spectrum ratios of every kept frame."""
        np.savez_compressed(self.folder / "spectrum.npz", iters=np.array(self.iters), ratio=np.stack(self.maps))


def curves_of(records: list[dict]) -> dict:
    """The replay's curves from a run's snapshot records (rounded: 4 decimals are far below what a plot shows)."""

    def r(v):
        return None if v is None or not math.isfinite(v) else round(float(v), 4)

    return {
        "iter": [rec["iter"] for rec in records],
        "psnr": [r(rec["psnr"]) for rec in records],
        "ssim": [r(rec["ssim"]) for rec in records],
        "loss": [None if rec["loss"] is None else float(f"{rec['loss']:.4g}") for rec in records],
        "ratio": [None if rec["ratio"] is None else float(f"{rec['ratio']:.4g}") for rec in records],
        "fbc": [[r(v) for v in rec["fbc"]] for rec in records],
    } | ({"bound": [r(rec["bound"]) for rec in records]} if "bound" in records[0] else {})  # learned bounds


@dataclass
class Run:
    """One lane of one experiment, loaded: curves, frame iterations, spectrum maps and frame paths."""

    experiment: str
    lane: str
    curves: dict
    frame_iters: list[int]
    spectra: np.ndarray  # frames × h × w, uint8
    folder: Path

    def frame_index(self, iteration: int) -> int:
        """The frame at or just before ``iteration`` (the first one before any)."""
        idx = int(np.searchsorted(np.asarray(self.frame_iters), iteration, side="right")) - 1
        return max(0, idx)

    def frame_at(self, iteration: int) -> int:
        """The iteration of the frame shown at ``iteration``."""
        return self.frame_iters[self.frame_index(iteration)]

    def frame_path(self, iteration: int) -> Path:
        return self.folder / f"{self.frame_at(iteration):05d}.webp"

    def spectrum(self, iteration: int) -> np.ndarray:
        """The spectrum ratio in [0, 1] at the frame of ``iteration``."""
        return self.spectra[self.frame_index(iteration)].astype(np.float32) / 255

    def value(self, key: str, iteration: int):
        """A curve's value at the last snapshot at or before ``iteration``."""
        idx = max(0, int(np.searchsorted(np.asarray(self.curves["iter"]), iteration, side="right")) - 1)
        return self.curves[key][idx]


class Replays:
    """A replay folder: its manifest, and runs loaded on first use (then kept: they are small)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = json.loads((self.root / "manifest.json").read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{self.root}: replay format {self.manifest.get('format')}, this code reads {FORMAT}")
        self.experiments = {e["name"]: e for e in self.manifest["experiments"]}
        self._runs: dict[tuple[str, str], Run] = {}

    def lanes(self, experiment: str) -> list[dict]:
        return self.experiments[experiment]["lanes"]

    def run(self, experiment: str, lane: str) -> Run:
        """A lane's run (a lane that ran as another, ``same_as``, is that lane's folder)."""
        key = (experiment, lane)
        if key not in self._runs:
            entry = next((e for e in self.lanes(experiment) if e["name"] == lane), {})
            folder = self.root / experiment / entry.get("same_as", lane)
            curves = json.loads((folder / "curves.json").read_text())
            with np.load(folder / "spectrum.npz") as z:
                iters, ratio = z["iters"].tolist(), z["ratio"]
            self._runs[key] = Run(experiment, lane, curves, iters, ratio, folder)
        return self._runs[key]

    def image(self, experiment: str, name: str) -> Path | None:
        """``clean``, ``observed`` or ``baseline`` of an experiment (None when it has none)."""
        path = self.root / experiment / f"{name}.webp"
        return path if path.is_file() else None


def experiment_entry(exp: Experiment, lanes: list[Lane], extra: dict) -> dict:
    """An experiment's manifest entry."""
    return {**asdict(exp), "lanes": [asdict(lane) for lane in lanes], **extra}


__all__ = [
    "EXPERIMENTS",
    "LANES",
    "Experiment",
    "FrameWriter",
    "Lane",
    "Replays",
    "SpectrumView",
    "curves_of",
    "ran_as",
]
