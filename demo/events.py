"""The app's event functions: plain functions of widget values that return widget updates (tests call them)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np

from dip_core import TASKS, InputError, RunConfig
from dip_core.config import choices
from dip_core.io import MIN_SIDE, to_uint8

from .exports import read_config
from .form import RunForm
from .inputs import choice, flag, number, read_image
from .live import live_run
from .session import STOPS
from .settings import LIMITS, default_control
from .turns import Reader, turns_of

logger = logging.getLogger(__name__)

#: The widgets a loaded config JSON sets, by name
CONFIG_WIDGETS = (
    "task",
    "level_slider",
    "sr_factor",
    "lipschitz",
    "lipschitz_auto",
    "upsample",
    "gaussian_sigma",
    "iterations",
    "seed",
    "auto_stop",
    "compare",
    "observed",
    "max_side",
    "width",
    "lr",
)


def level_update(task: str, value: float | None = None) -> dict:
    """The level slider for ``task``: its range, label and help from the task's spec (and ``value`` when given);
    hidden for a level that takes a few values (the SR factor's radio buttons instead)."""
    level = TASKS[task].level
    if level.slider is None:
        return gr.update(visible=False)
    lo, hi, step = level.slider
    extra = {} if value is None else {"value": value}
    label = level.name[0].upper() + level.name[1:]
    return gr.update(minimum=lo, maximum=hi, step=step, label=label, info=level.info or None, visible=True, **extra)


def on_task_change(task: str) -> tuple:
    """Show the widgets of the chosen task: the level slider's range, the SR factor, the mask tools."""
    spec = TASKS[task]
    return level_update(task), gr.update(visible=bool(spec.level.choices)), gr.update(visible=spec.needs_mask)


def on_task_input(task: str) -> tuple:
    """When the user picks a task: its default level, its default λ and whether it starts on auto
    (settings.default_control)."""
    spec, control = TASKS[task], default_control(task)
    return level_update(task, spec.level.default), control["lipschitz"], control["lipschitz_auto"]


def describe_image(image: Any, max_side: float | None) -> tuple[str, dict | None]:
    """A notice about the uploaded image (its size, or why it was resized or refused) and the mask editor's
    background."""
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


def prepare_inputs(
    task: str, level: float, sr_factor: Any, mask_mode: str, editor: dict | None, lipschitz: Any, auto: bool
) -> tuple:
    """The API's ``level``, ``mask`` and ``lipschitz`` (as JSON) from the UI widgets (the SR factor radio, the mask
    editor, the λ slider and its ``auto`` box)."""
    spec = TASKS[task]
    value = int(sr_factor) if spec.level.choices else level
    mask = mask_from_editor(editor) if spec.needs_mask and mask_mode == "drawn" else None
    return value, mask, json.dumps("auto" if auto else lipschitz)  # the hidden JSON field keeps a number a number


def run_lab(form: RunForm, request: gr.Request | None = None) -> Iterator[tuple]:
    """The streaming ``run`` endpoint: yields the values of RUN_OUTPUTS, in that order, then CAPTION_OUTPUTS' (which
    API clients do not receive; demo/form.py). The run itself is ``live_run`` (on ZeroGPU in a GPU worker process);
    here, in the server's process, its Stop flag lives, and its frames wait while the visitor has not read the last
    ones (``turns.Reader``): a run nobody reads stops."""
    session = getattr(request, "session_hash", None)
    key = session or uuid.uuid4().hex
    if STOPS.stopped_before_start(key):
        raise gr.Error("stopped while it waited in the queue: the run did not start", print_exception=False)
    stop = STOPS.start(key)
    reader = Reader(turns_of(request), session)
    run = live_run(key, form)
    abandoned = False
    try:
        for i, (done, outputs) in enumerate(run):
            if abandoned:
                continue  # the run ends after its current step; nobody is there for its last frame
            if not (done or i == 0) and reader.gone():
                logger.info("run of session %s stopped: nobody reads it", key[:8])
                abandoned = True
                stop.set()
            elif done or i == 0 or reader.ready():
                yield outputs
    finally:
        run.close()
        STOPS.finish(key, stop)
        if abandoned and reader.turns is not None:
            reader.turns.drop(session)


def request_stop(request: gr.Request | None = None) -> None:
    """Stop this session's run after its current step; it keeps (and offers for download) what it reached. A run
    still waiting in the queue never starts."""
    key = getattr(request, "session_hash", None)
    if key:
        turns = turns_of(request)
        STOPS.stop(key, waiting=turns is not None and turns.holds(key, running=False))


def on_upsample_change(upsample: str) -> dict:
    """Show the Gaussian σ slider only for Gaussian upsampling."""
    return gr.update(visible=upsample == "gaussian")


def on_compare_change(compare: bool) -> tuple:
    """Show or hide the vanilla panel and its caption."""
    shown = gr.update(visible=compare)
    return shown, gr.update(label="Controlled" if compare else "Result"), shown


def load_config(path: str | None) -> tuple:
    """Set the widgets of CONFIG_WIDGETS from a config JSON the app wrote (unknown keys are ignored, bad values
    refused with the same checks as a run's: the task's level range, RunConfig's ranges within this device's)."""
    if path is None:
        return (gr.skip(),) * len(CONFIG_WIDGETS)
    try:
        c = read_config(path)
        task = choice("task", c.get("task", "denoise"), TASKS)
        spec = TASKS[task]
        sigma = c.get("gaussian_sigma")
        lim = LIMITS
        lam = RunConfig.check("lipschitz", c.get("lipschitz", 0.0), lim.lipschitz_cap)
        auto = lam == "auto" or choice("bound", c.get("bound", "fixed"), choices("bound")) != "fixed"
        values = dict(
            task=task,
            level_slider=spec.level.check(c.get("level")),
            lipschitz=default_control(task)["lipschitz"] if lam == "auto" else lam,
            lipschitz_auto=auto,  # a run whose bound was learned came from auto: loaded, it runs auto again
            upsample=choice("upsample", c.get("upsample", "bilinear"), choices("upsample")),
            gaussian_sigma=0.5
            if sigma is None or isinstance(sigma, list)
            else RunConfig.check("gaussian_sigma", sigma, lim.sigma_cap),
            iterations=RunConfig.check("iterations", c.get("iterations", lim.iterations), lim.iterations_cap),
            seed=RunConfig.check("seed", c.get("seed", 0)),
            auto_stop=choice("auto_stop", c.get("auto_stop", "off"), choices("auto_stop")),
            compare=flag("compare", c.get("compare", True)),
            observed=flag("observed", c.get("observed", False)),
            max_side=number("max_side", c.get("max_side", lim.max_side), MIN_SIDE, lim.max_side_cap, True),
            width=RunConfig.check("width", min(c.get("width", lim.width), lim.width_cap), lim.width_cap),
            lr=RunConfig.check("lr", c.get("lr", lim.lr)),
        )
    except (InputError, TypeError, ValueError, OverflowError) as err:
        raise gr.Error(
            f"config: {err if isinstance(err, InputError) else 'a value cannot be used'}", print_exception=False
        ) from None
    level = values["level_slider"]
    values["sr_factor"] = int(level) if spec.level.choices else 4
    if spec.level.slider is None:
        values["level_slider"] = gr.skip()
    return tuple(values[k] for k in CONFIG_WIDGETS)
