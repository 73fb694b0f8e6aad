"""Downloads of a run (``demo.records.RunData``): result PNGs, the log (CSV and JSON), the re-loadable config JSON
and an animated GIF."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dip_core import InputError
from dip_core.io import save_png, to_uint8

if TYPE_CHECKING:
    from .records import RunData, Track

GIF_SIDE = 192  # each panel of the animation is scaled to this height (lower when the strip would be too wide)
GIF_BAR = 22  # the caption bar above the panels
GIF_GAP = 6  # between two panels
#: Every frame of the downloads' GIF fits this box (width, height) in pixels: the panels of a long thin image are
#: scaled down until the strip fits its width.
GIF_BOX = (1024, GIF_SIDE + GIF_BAR)
DOWNLOAD_TTL_S = 3600  # a run's download folder is deleted this long after it was written
CONFIG_MAX_BYTES = 64 * 1024  # a config JSON the app wrote is about 1 KB


def side_by_side(images: list[np.ndarray], caption: str = "") -> np.ndarray:
    """Float H×W×C images in [0, 1] as one RGB uint8 strip with a caption bar, GIF_BOX in size at most: each image
    GIF_SIDE high, or all scaled down alike until the strip fits GIF_BOX's width."""
    sizes = [(max(1, round(img.shape[1] * GIF_SIDE / img.shape[0])), GIF_SIDE) for img in images]
    room = GIF_BOX[0] - GIF_GAP * (len(images) - 1)
    if sum(w for w, _ in sizes) > room:
        shrink = room / sum(w for w, _ in sizes)
        sizes = [(max(1, int(w * shrink)), max(1, int(h * shrink))) for w, h in sizes]
    panels = []
    for img, (w, h) in zip(images, sizes):
        pil = Image.fromarray(to_uint8(img)).convert("RGB")
        panels.append(pil.resize((w, h), Image.NEAREST if pil.height < h else Image.LANCZOS))
    width = min(GIF_BOX[0], sum(p.width for p in panels) + GIF_GAP * (len(panels) - 1))
    strip = Image.new("RGB", (width, GIF_BOX[1]), "white")
    x = 0
    for p in panels:
        strip.paste(p, (x, GIF_BAR))
        x += p.width + GIF_GAP
    ImageDraw.Draw(strip).text((4, 3), caption, fill=(20, 20, 20), font=ImageFont.load_default(size=14))
    return np.asarray(strip)


def fit_box(frame: np.ndarray) -> np.ndarray:
    """A uint8 frame scaled down (keeping its aspect) to fit GIF_BOX; as it is when it fits."""
    h, w = frame.shape[:2]
    if w <= GIF_BOX[0] and h <= GIF_BOX[1]:
        return frame
    pil = Image.fromarray(frame)
    pil.thumbnail(GIF_BOX, Image.LANCZOS)
    return np.asarray(pil)


def config_dict(run: RunData) -> dict:
    """The controlled run's RunConfig as it ran (its ``auto`` choices made: the device and the convolution path this
    machine timed) plus the app's choices; loads with ``RunConfig.from_dict`` or the app."""
    req = run.request
    extra = dict(
        task=req.task.name, level=req.task.level, observed=req.observed, compare=req.compare, max_side=req.max_side
    )
    return {**run.tracks["controlled"].config.to_dict(), **extra}


def log_rows(tracks: Mapping[str, Track]) -> list[dict]:
    """One flat row per logged iteration and run (for the CSV)."""
    rows = []
    for t in tracks.values():
        for r in t.records:
            row = {"run": t.name, **{k: r[k] for k in ("iter", "loss", "psnr", "ssim", "ratio", "seconds")}}
            for key in ("fbc", "fbc_clean"):
                for k, v in enumerate(r[key] or [None] * 5):
                    row[f"{key}_{k + 1}"] = v
            rows.append(row)
    return rows


def gradio_temp_dir() -> Path:
    """Gradio's temp folder (``GRADIO_TEMP_DIR``, else <system temp>/gradio), where uploads and outputs live."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def download_root() -> Path:
    """The folder under Gradio's temp folder that holds one sub-folder per run's downloads."""
    return gradio_temp_dir() / "spectral-bias-lab"


def purge_old_downloads(max_age: float = DOWNLOAD_TTL_S) -> int:
    """Delete the run folders under ``download_root()`` older than ``max_age`` seconds; returns how many."""
    root, now, removed = download_root(), time.time(), 0
    if not root.is_dir():
        return 0
    for sub in root.iterdir():
        try:
            if sub.is_dir() and not sub.is_symlink() and now - sub.stat().st_mtime > max_age:
                shutil.rmtree(sub, ignore_errors=True)
                removed += 1
        except OSError:  # another worker removed it meanwhile
            continue
    return removed


def run_folder(prefix: str = "run-") -> Path:
    """A new folder under ``download_root()`` (inside Gradio's cache, so Gradio serves its files in place),
    made after deleting the run folders older than DOWNLOAD_TTL_S."""
    purge_old_downloads()
    download_root().mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=download_root()))


class FrameFiles:
    """A live run's images as PNG files of its own, a new name each, in one folder made on first use.

    Why not arrays: Gradio writes an array to <cache>/<hash of its PNG>/image.png, rewriting the file each
    time; two runs with equal frames (same image and seed) then rewrite it while a client downloads it, and
    the download ends short. A file already in Gradio's cache is served as it is, and never rewritten here.
    """

    #: Files kept per name: older frames are deleted (a reader that far behind is sent no new frames meanwhile:
    #: demo/turns.py), so a long run leaves a few dozen files, not one per frame.
    KEEP = 16

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.count = 0
        self.written: dict[str, list[Path]] = {}

    def __call__(self, name: str, img: np.ndarray | None) -> str | None:
        """Write ``img`` (H×W×C float in [0, 1]) as ``NNNNN-name.png``; returns its path (None for None)."""
        if img is None:
            return None
        if self.folder is None:
            self.folder = run_folder("live-")
        self.count += 1
        path = self.folder / f"{self.count:05d}-{name}.png"
        save_png(img, path)
        paths = self.written.setdefault(name, [])
        paths.append(path)
        if len(paths) > self.KEEP:
            paths.pop(0).unlink(missing_ok=True)
        return str(path)


def write_downloads(run: RunData, folder: str | Path | None = None, animation: Sequence[np.ndarray] = ()) -> list[str]:
    """Write every download of a finished (or stopped) run into ``folder`` (by default a new run_folder()); the GIF
    from ``animation``'s uint8 frames, when there are any, each fitted to GIF_BOX."""
    out = run_folder() if folder is None else Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, t in run.tracks.items():
        path = out / ("result.png" if name == "controlled" else f"result_{name}.png")
        save_png(t.last.image, path)
        files.append(path)
    save_png(run.observation, out / "observation.png")
    files.append(out / "observation.png")
    if run.baseline.image is not None:  # the classical (OpenCV) result beside the run
        save_png(run.baseline.image, out / "baseline.png")
        files.append(out / "baseline.png")
    rows = log_rows(run.tracks)
    with open(out / "log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log = {
        name: {
            "label": t.label,
            "config": t.config.to_dict(),
            "stopped_early": t.last.stopped,
            "stop_iter": t.last.stop_iter,
            "best_psnr": t.last.best_psnr,
            "best_iter": t.last.best_iter,
            "message": t.last.message,
            "records": t.records,
        }
        for name, t in run.tracks.items()
    }
    log["baseline"] = run.baseline.summary()
    (out / "log.json").write_text(json.dumps(log, indent=1))
    (out / "config.json").write_text(json.dumps(config_dict(run), indent=2))
    files += [out / "log.csv", out / "log.json", out / "config.json"]
    if animation:
        gif = out / "evolution.gif"
        frames = [Image.fromarray(fit_box(f)) for f in animation]
        durations = [120] * (len(frames) - 1) + [2000]
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
        files.append(gif)
    return [str(f) for f in files]


def read_config(path: str | Path) -> dict:
    """A config JSON written by the app (or any RunConfig dict), at most CONFIG_MAX_BYTES; ``InputError`` when it
    is not one (too large, not JSON, nested too deep, numbers too long)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(CONFIG_MAX_BYTES + 1)
    except OSError:
        raise InputError("not a config JSON file (it cannot be read)") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise InputError(f"not a config JSON file (larger than {CONFIG_MAX_BYTES // 1024} KB)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        why = "nested too deep" if isinstance(err, RecursionError) else type(err).__name__
        raise InputError(f"not a config JSON file ({why})") from None
    if not isinstance(data, dict):
        raise InputError("not a config JSON file (expected an object)")
    return data
