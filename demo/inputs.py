"""Checking what the UI or an API client sent, and turning it into a task and run configurations."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from dip_core import TASKS, InputError, RunConfig, Task, make_task, observed_task, preset
from dip_core.bound import auto_control
from dip_core.config import Range, choices
from dip_core.errors import shown
from dip_core.io import MIN_SIDE, load_image, load_mask
from dip_core.stopping import noise_sigma

from .exports import DOWNLOAD_TTL_S, gradio_temp_dir
from .form import RunForm
from .settings import LIMITS, VANILLA, Limits, default_control

#: Decoded uploads kept (``read_image``), bounded by the bytes of their float arrays, least recently used dropped
#: first: a 256 px colour image is 0.8 MB, so dozens of visitors' images fit.
DECODE_CACHE_BYTES = 64 * 2**20
#: The smallest low-resolution side super-resolution of an already-degraded image takes (the check in
#: ``dip_core.tasks.sr.SuperResolution.observe``; tests/test_bounds.py holds the two together).
LOW_RES_MIN_SIDE = 8


@dataclass
class RunRequest:
    """A checked request: the task, one or two configurations (``vanilla`` then ``controlled``) and notes."""

    task: Task
    configs: dict[str, RunConfig]
    observed: bool
    max_side: int
    mask_given: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def compare(self) -> bool:
        return len(self.configs) == 2


def number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> float:
    """``value`` as a finite number in [lo, hi] (an int when ``integer``), else ``InputError`` (``dip_core``'s
    ``Range.check``, the one number check)."""
    return Range(lo, hi, integer).check(name, value)


def choice(name: str, value: Any, options: tuple[str, ...] | list[str]) -> str:
    """``value`` if it is one of ``options``, else ``InputError``."""
    if value not in options:
        raise InputError(f"{name} must be one of {', '.join(options)}, got {shown(value)}")
    return value


def flag(name: str, value: Any) -> bool:
    """A boolean from True/False (or 0/1, "true"/"false" as some clients send)."""
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InputError(f"{name} must be true or false, got {shown(value)}")


class ByteLRU:
    """A thread-safe least-recently-used cache bounded by the bytes of its values: putting one evicts the oldest
    until the total fits ``max_bytes``; a value larger than the whole bound is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: Any, size: int) -> bool:
        """Keep ``value`` (``size`` bytes) under ``key``, evicting the least recently used; False if it is too large."""
        with self._lock:
            old = self._items.pop(key, None)
            self.nbytes -= old[1] if old else 0
            if size > self.max_bytes:
                return False
            while self._items and self.nbytes + size > self.max_bytes:
                self.nbytes -= self._items.popitem(last=False)[1][1]
            self._items[key] = (value, size)
            self.nbytes += size
            return True

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self.nbytes = 0


#: ``read_image``'s decoded files, keyed by path, resolved path, size, mtime, max side and min side.
DECODED = ByteLRU(DECODE_CACHE_BYTES)


def _decoded(path: str, key: tuple, max_side: int, min_side: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """One file decoded at ``max_side`` (read-only), cached (DECODED) by ``key``: its resolved path, size, mtime and
    the sides: once per upload, not once per event (describe, run, ...); failures are not cached."""
    found = DECODED.get(key)
    if found is not None:
        return found
    arr, notes = load_image(path, max_side, min_side)
    arr.flags.writeable = False
    DECODED.put(key, (arr, tuple(notes)), arr.nbytes)
    return arr, tuple(notes)


def stale_upload() -> InputError:
    """What a visitor sees when Gradio has deleted the upload meanwhile (its ``delete_cache``), without its path."""
    kept = "an hour" if DOWNLOAD_TTL_S == 3600 else f"{DOWNLOAD_TTL_S / 3600:g} hours"
    return InputError(f"the uploaded image is no longer on the server (uploads are kept for {kept}): upload it again")


def _uploaded(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in Gradio's temp folder (where uploads are kept, and deleted after DOWNLOAD_TTL_S)."""
    root = os.path.realpath(gradio_temp_dir())
    return os.path.realpath(path).startswith(root + os.sep)


def upload_gone(path: str | os.PathLike) -> bool:
    """Whether ``path`` was an upload that is no longer there."""
    return _uploaded(path) and not os.path.exists(path)


def read_image(path: Any, max_side: int, min_side: int = MIN_SIDE) -> tuple[np.ndarray, list[str]]:
    """Load an uploaded image (file path, PIL image or array) with both sides ≤ ``max_side`` (refused when its short
    side would fall under ``min_side``); ``InputError`` if bad. A file path is decoded once per change (a cache
    bounded in bytes) and a fresh copy returned; arrays and PIL images are not."""
    if path is None or (isinstance(path, str) and not path):
        raise InputError("upload an image or pick an example first")
    if isinstance(path, (str, os.PathLike)):
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except (OSError, ValueError):
            if upload_gone(path):
                raise stale_upload() from None
            return load_image(path, max_side, min_side)  # its own one-line error (no such file, ...)
        key = (os.fspath(path), real, st.st_size, st.st_mtime_ns, int(max_side), int(min_side))
        arr, notes = _decoded(os.fspath(path), key, int(max_side), int(min_side))
        return arr.copy(), list(notes)
    if isinstance(path, np.ndarray):
        if path.dtype.kind not in "fiub":
            raise InputError(f"image array has an unsupported type {path.dtype}")
        arr = path.astype(np.float32)
        if not np.isfinite(arr).all():
            raise InputError("image contains NaN or infinite values")
        if path.dtype == np.uint8 or arr.max() > 1:
            arr = arr / 255
        path = Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8).squeeze())
    return load_image(path, max_side, min_side)


def read_mask(path: Any, size: tuple[int, int]) -> np.ndarray | None:
    """A mask image (white = known) resized (nearest) to ``size`` = (H, W); None when there is none."""
    if path is None or (isinstance(path, str) and not path):
        return None
    if isinstance(path, (str, os.PathLike)) and upload_gone(path):
        raise stale_upload()
    return load_mask(path, size)  # a large mask is sampled while decoding, never made float at full size


def parse_request(image: Any, limits: Limits = LIMITS, **values: Any) -> RunRequest:
    """``parse_form`` of the form of ``image`` and ``values`` by name (``RunForm``'s fields; an unknown name is refused
    with one line)."""
    return parse_form(RunForm.of({"image": image, **values}), limits)


def settings(form: RunForm, limits: Limits = LIMITS) -> dict[str, Any]:
    """Every value of ``form`` but the image and the mask, checked (``InputError`` on the first bad one), None replaced
    by its default: the task, observed, level (None: estimated from an observed image), lipschitz, upsample,
    gaussian_sigma, iterations, seed, auto_stop, compare, max_side, width, lr. ``parse_form`` and a link's values
    (``demo.links``) are checked here.

    Ranges are RunConfig's and the task spec's (``RunConfig.check``, ``Level.check``); ``limits`` only narrows
    them to what this device affords."""
    f = form
    task = choice("task", f.task, TASKS)
    spec = TASKS[task]
    observed = flag("observed", f.observed)
    level = None if f.level is None or f.level == "" else f.level
    # an already-noisy image without a level: its σ is estimated from it (Denoise.observe); else the default
    level = None if level is None and observed and spec.estimates_level else spec.level.check(level)
    control = default_control(task, limits)  # what None means for the controlled network's three settings
    lam = ("auto" if control["lipschitz_auto"] else control["lipschitz"]) if f.lipschitz is None else f.lipschitz
    upsample = control["upsample"] if f.upsample is None else f.upsample
    sigma = control["gaussian_sigma"] if f.gaussian_sigma is None else f.gaussian_sigma
    iterations = limits.iterations if f.iterations is None else f.iterations
    s = dict(task=task, observed=observed, level=level)  # checked in this order: the first bad value is the error
    s["lipschitz"] = RunConfig.check("lipschitz", lam, limits.lipschitz_cap)
    s["upsample"] = choice("upsample", upsample, choices("upsample"))
    s["gaussian_sigma"] = RunConfig.check("gaussian_sigma", sigma, limits.sigma_cap)
    s["iterations"] = RunConfig.check("iterations", iterations, limits.iterations_cap)
    s["seed"] = RunConfig.check("seed", f.seed)
    s["auto_stop"] = choice("auto_stop", f.auto_stop, choices("auto_stop"))
    if s["auto_stop"] == "discrepancy" and level is not None:
        noise_sigma(task, level)  # a one-line error unless the task has a known noise level
    s["compare"] = flag("compare", f.compare)
    max_side = limits.max_side if f.max_side is None else f.max_side
    s["max_side"] = number("max_side", max_side, MIN_SIDE, limits.max_side_cap, True)
    s["width"] = RunConfig.check("width", limits.width if f.width is None else f.width, limits.width_cap)
    s["lr"] = RunConfig.check("lr", limits.lr if f.lr is None else f.lr)
    return s


def parse_form(form: RunForm, limits: Limits = LIMITS) -> RunRequest:
    """Validate every value of ``form`` (the API bypasses the sliders; ``settings``) and build the task and
    configurations."""
    f, s = form, settings(form, limits)
    task, spec, observed, level, max_side = s["task"], TASKS[s["task"]], s["observed"], s["level"], s["max_side"]
    compare, width, seed = s["compare"], s["width"], s["seed"]

    side, least = max_side, MIN_SIDE
    factor = spec.observed_scale(level) if observed else 1
    if factor > 1:  # an observed SR image is upscaled: its result (factor × the image) must also fit max_side
        side, least = max_side // factor, LOW_RES_MIN_SIDE
        if side < least:
            raise InputError(
                f"×{factor} super-resolution of an already-degraded image needs a maximum side of at least "
                f"{least * factor} px (its result is {factor} times the image), got {max_side}"
            )
    img, notes = read_image(f.image, side, least)
    mask_img = read_mask(f.mask, img.shape[:2]) if spec.needs_mask else None
    if observed:
        built = observed_task(task, img, level, mask=mask_img)
    else:
        built = make_task(task, img, level, mask=mask_img, seed=seed)
    every = scaled_every(limits, built.out_size, width, runs=2 if compare else 1)
    base = preset(limits.preset, width=width, lr=s["lr"], iterations=s["iterations"], every=every, seed=seed)
    control = {k: s[k] for k in ("lipschitz", "upsample", "gaussian_sigma", "auto_stop")}
    controlled = replace(base, **control)
    configs = {"vanilla": replace(base, **VANILLA)} if compare else {}
    configs["controlled"] = controlled
    if s["lipschitz"] == "auto":  # what auto runs for this task, in its one line (dip_core/bound.py)
        notes.append(auto_control(built)[1])
    return RunRequest(built, configs, observed, max_side, mask_img is not None, notes + built.notes)


def scaled_every(limits: Limits, size: tuple[int, int], width: int, runs: int = 1) -> int:
    """Snapshot interval: the preset's on GPU; on CPU fewer steps per snapshot for larger images, wider
    networks or two runs in lockstep, so that the UI still updates about once a second."""
    if limits.device != "cpu":
        return limits.every
    cost = (size[0] * size[1]) / 128**2 * (width / 24) ** 2 * runs
    return int(max(1, min(limits.every, round(limits.every / max(cost, 1e-9)))))
