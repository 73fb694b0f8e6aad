"""The app's event functions: plain functions of widget values that return widget updates (tests call them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import numpy as np

from dip_core import PAPER_LIPSCHITZ, InputError
from dip_core.io import to_uint8
from dip_core.stopping import STOP_RULES
from dip_core.tasks import DEFAULT_LEVELS, LEVEL_NAMES, SR_FACTORS, TASKS

from .exports import read_config, write_downloads
from .inputs import SEED_CAP, choice, flag, number, parse_request, read_image
from .session import STOPS, Frame, LabRun
from .settings import LIMITS

#: Slider (minimum, maximum, step) per task in the UI (the API accepts the engine's full ranges).
LEVEL_SLIDERS = {"denoise": (1, 100, 1), "jpeg": (1, 100, 1), "inpaint": (0.05, 0.95, 0.05), "enhance": (0, 5, 0.1)}
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")

try:  # ZeroGPU on Hugging Face: the decorator is a no-op elsewhere (and the package is optional)
    import spaces

    gpu = spaces.GPU(duration=180)
except ImportError:  # pragma: no cover - depends on the environment

    def gpu(fn: Callable) -> Callable:
        return fn


def level_update(task: str, value: float | None = None) -> dict:
    """The level slider for ``task``: its range and label (and ``value`` when given)."""
    if task == "sr":
        return gr.update(visible=False)
    lo, hi, step = LEVEL_SLIDERS[task]
    label = LEVEL_NAMES[task][0].upper() + LEVEL_NAMES[task][1:]
    extra = {} if value is None else {"value": value}
    return gr.update(minimum=lo, maximum=hi, step=step, label=label, visible=True, **extra)


def on_task_change(task: str) -> tuple:
    """Show the widgets of the chosen task: the level slider's range, the SR factor, the mask tools."""
    return level_update(task), gr.update(visible=task == "sr"), gr.update(visible=task == "inpaint")


def on_task_input(task: str) -> tuple:
    """When the user picks a task: its default level and the paper's λ for it."""
    return level_update(task, DEFAULT_LEVELS[task]), PAPER_LIPSCHITZ[task]


def describe_image(image: Any, max_side: float | None) -> tuple[str, dict | None]:
    """A notice about the uploaded image (its size, or why it was resized or refused) and the mask editor's background."""
    if image is None:
        return "", None
    side = int(max_side or LIMITS.max_side)
    try:
        img, notes = read_image(image, side)
    except InputError as err:
        return f"⚠️ {err}", None
    h, w, c = img.shape
    text = f"{w}×{h} {'colour' if c == 3 else 'grey'} image"
    if notes:
        text = "⚠️ " + "; ".join(notes)
    return text, {"background": to_uint8(img), "layers": [], "composite": None}


def mask_from_editor(editor: dict | None) -> np.ndarray:
    """The drawn mask (white = known) from the editor's layer: painted pixels are the missing ones."""
    layers = (editor or {}).get("layers") or []
    painted = None
    for layer in layers:
        if layer is None:
            continue
        arr = np.asarray(layer)
        alpha = (
            arr[..., 3] > 0 if arr.ndim == 3 and arr.shape[2] == 4 else arr.reshape(arr.shape[:2] + (-1,)).max(-1) > 0
        )
        painted = alpha if painted is None else painted | alpha
    if painted is None or not painted.any():
        raise gr.Error("Paint over the pixels to remove first, or choose a random mask.", print_exception=False)
    return np.where(painted, 0, 255).astype(np.uint8)


def prepare_inputs(task: str, level: float, sr_factor: Any, mask_mode: str, editor: dict | None) -> tuple:
    """The API's ``level`` and ``mask`` from the UI widgets (the SR factor radio and the mask editor)."""
    value = int(sr_factor) if task == "sr" else level
    mask = mask_from_editor(editor) if task == "inpaint" and mask_mode == "drawn" else None
    return value, mask


def observation_label(lab: LabRun) -> str:
    """What the observation is, e.g. "Observation (σ 25)"."""
    task, req = lab.request.task, lab.request
    if req.observed:
        return "Observation (as uploaded)"
    kind = {
        "denoise": f"σ {task.level:g}",
        "jpeg": f"JPEG q{task.level:g}",
        "inpaint": "drawn mask" if req.mask_given else f"{task.level:.0%} kept",
        "sr": f"÷{task.level:g}, {task.observation.shape[-1]}×{task.observation.shape[-2]}",
        "enhance": f"gain {task.level:g}",
    }[task.name]
    return f"Observation ({kind})"


@gpu
def run_lab(
    image: Any,
    task: str = "denoise",
    level: float | None = None,
    lipschitz: float = PAPER_LIPSCHITZ["denoise"],
    upsample: str = "bilinear",
    gaussian_sigma: float = 0.5,
    iterations: int = LIMITS.iterations,
    seed: int = 0,
    auto_stop: str = "off",
    compare: bool = True,
    observed: bool = False,
    mask: Any = None,
    max_side: int = LIMITS.max_side,
    width: int = LIMITS.width,
    lr: float = LIMITS.lr,
    request: gr.Request | None = None,
) -> Iterator[tuple]:
    """The streaming ``run`` endpoint: yields (observation, vanilla, result, clean, curves, spectrum, status, files,
    baseline)."""
    try:
        req = parse_request(image, task, level, lipschitz, upsample, gaussian_sigma, iterations, seed, auto_stop,
                            compare, observed, mask, max_side, width, lr)  # fmt: skip
    except InputError as err:
        raise gr.Error(str(err), print_exception=False) from None
    for note in req.notes:
        gr.Warning(note)
    key = getattr(request, "session_hash", None) or uuid.uuid4().hex
    stop = STOPS.start(key)
    lab = LabRun(req, stop=stop.is_set)
    if lab.baseline.unavailable:
        gr.Warning(lab.baseline.unavailable)
    try:
        for i, frame in enumerate(lab.stream()):
            yield frame_outputs(lab, frame, first=i == 0)
    except RuntimeError as err:  # e.g. out of memory on the device: keep it to one line
        raise gr.Error(f"the run failed: {str(err).splitlines()[0]}", print_exception=False) from None
    finally:
        STOPS.finish(key, stop)


def frame_outputs(lab: LabRun, frame: Frame, first: bool) -> tuple:
    """Widget values for one frame: the first also sets the labels (and clears the downloads); later ones
    send plain values, so API clients get file paths; unchanged widgets are skipped."""
    results = {name: shown(img) for name, img in frame.results.items()}
    vanilla, result = results.get("vanilla"), results["controlled"]
    files = write_downloads(lab) if frame.done else None if first else gr.skip()
    if not first:
        return (gr.skip(), gr.skip() if vanilla is None else vanilla, result, gr.skip(), *frame_plots(frame), files,
                gr.skip())  # fmt: skip
    obs = gr.update(value=shown(lab.observation), label=observation_label(lab))
    clean = gr.update(value=shown(lab.clean), visible=lab.clean is not None)
    labels = {name: t.label for name, t in lab.tracks.items()}
    vanilla = (
        gr.update(visible=False) if vanilla is None else gr.update(value=vanilla, label=labels["vanilla"], visible=True)
    )
    result = gr.update(value=result, label=labels["controlled"])
    return obs, vanilla, result, clean, *frame_plots(frame), files, baseline_update(lab)


def baseline_label(lab: LabRun) -> str:
    """The baseline panel's label, short enough for the panel: "Baseline NL-means · 23.72 dB" (no dB when
    the clean image is unknown); the method's parameters are in the README."""
    b = lab.baseline
    if b.image is None:
        return "Baseline unavailable"
    short = b.method.split(" (")[0].removeprefix("OpenCV ")
    return f"Baseline {short}" + ("" if b.psnr is None else f" · {b.psnr:.2f} dB")


def baseline_update(lab: LabRun) -> dict:
    """The baseline panel: OpenCV's result (hidden when it could not run)."""
    b = lab.baseline
    return gr.update(value=shown(b.image), label=baseline_label(lab), visible=b.image is not None)


def shown(img: np.ndarray | None) -> np.ndarray | None:
    """An engine image (H×W×C float) as the image widgets take it: uint8 H×W×3, or H×W for a grey image
    (Gradio cannot save H×W×1 arrays)."""
    return None if img is None else to_uint8(img)


def frame_plots(frame: Frame) -> tuple:
    """The two figures and the status line of a frame."""
    return frame.curves, frame.spectrum, frame.status


def request_stop(request: gr.Request | None = None) -> None:
    """Stop this session's run after its current step; it keeps (and offers for download) what it reached."""
    key = getattr(request, "session_hash", None)
    if key:
        STOPS.stop(key)


def on_compare_change(compare: bool) -> tuple:
    """Show or hide the vanilla panel."""
    return gr.update(visible=compare), gr.update(label="Controlled" if compare else "Result")


def load_config(path: str | None) -> tuple:
    """Set the widgets from a config JSON the app wrote (unknown keys are ignored, bad values refused)."""
    if path is None:
        return (gr.skip(),) * 13
    try:
        c = read_config(path)
        task = choice("task", c.get("task", "denoise"), TASKS)
        level = c.get("level", DEFAULT_LEVELS[task])
        sigma = c.get("gaussian_sigma")
        values = dict(
            level=number("level", level, 0, 255),
            lipschitz=number("lipschitz", c.get("lipschitz", 0.0), 0, LIMITS.lipschitz_cap),
            upsample=choice("upsample", c.get("upsample", "bilinear"), ("bilinear", "nearest", "gaussian")),
            gaussian_sigma=0.5 if sigma is None or isinstance(sigma, list) else number("gaussian_sigma", sigma, 0, 3),
            iterations=number("iterations", c.get("iterations", LIMITS.iterations), 1, LIMITS.iterations_cap, True),
            seed=number("seed", c.get("seed", 0), 0, SEED_CAP, True),
            auto_stop=choice("auto_stop", c.get("auto_stop", "off"), STOP_RULES),
            compare=flag("compare", c.get("compare", True)),
            observed=flag("observed", c.get("observed", False)),
            max_side=number("max_side", c.get("max_side", LIMITS.max_side), 16, LIMITS.max_side_cap, True),
            width=number("width", min(c.get("width", LIMITS.width), LIMITS.width_cap), 4, LIMITS.width_cap, True),
            lr=number("lr", c.get("lr", LIMITS.lr), 1e-5, 0.1),
        )
    except InputError as err:
        raise gr.Error(f"config: {err}", print_exception=False) from None
    level = values.pop("level")
    sr = int(level) if task == "sr" and int(level) in SR_FACTORS else 4
    return (task, level if task != "sr" else gr.skip(), sr, *values.values())
