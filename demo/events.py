"""The app's event functions: plain functions of widget values that return widget updates (tests call them)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import numpy as np
import torch

from dip_core import InputError, RunConfig
from dip_core.config import choices
from dip_core.engine import graph_start
from dip_core.io import MIN_SIDE, to_uint8
from dip_core.tasks import TASKS

from . import budget, frames
from .examples import DEFAULT_EXAMPLE
from .exports import FrameFiles, read_config, write_downloads
from .frames import Frame
from .inputs import RunRequest, choice, flag, number, parse_request, read_image
from .records import RunData
from .session import STOPS, LabRun
from .settings import GPU_BUDGET, LIMITS, ZERO_GPU, default_control
from .turns import Reader, turns_of

logger = logging.getLogger(__name__)

DEFAULT_CONTROL = default_control("denoise")  # the default run's (run_lab's keyword defaults)

#: run_lab's outputs by name, in the order the ``run`` endpoint returns them (the baseline panel last: it came
#: later, and API clients index the others)
RUN_OUTPUTS = ("observation", "vanilla", "result", "clean", "curves", "spectrum", "status", "files", "baseline")
#: What the page also shows, after RUN_OUTPUTS: the captions under the two runs' images (their PSNR changes every
#: frame). They are buttons, whose values API clients do not receive, so the endpoint's outputs stay RUN_OUTPUTS.
CAPTION_OUTPUTS = ("vanilla_caption", "result_caption")
#: The widgets a loaded config JSON sets, by name
CONFIG_WIDGETS = (
    "task",
    "level_slider",
    "sr_factor",
    "lipschitz",
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
    """The level slider for ``task``: its range and label from the task's spec (and ``value`` when given);
    hidden for a level that takes a few values (the SR factor's radio buttons instead)."""
    level = TASKS[task].level
    if level.slider is None:
        return gr.update(visible=False)
    lo, hi, step = level.slider
    extra = {} if value is None else {"value": value}
    return gr.update(
        minimum=lo, maximum=hi, step=step, label=level.name[0].upper() + level.name[1:], visible=True, **extra
    )


def on_task_change(task: str) -> tuple:
    """Show the widgets of the chosen task: the level slider's range, the SR factor, the mask tools."""
    spec = TASKS[task]
    return level_update(task), gr.update(visible=bool(spec.level.choices)), gr.update(visible=spec.needs_mask)


def on_task_input(task: str) -> tuple:
    """When the user picks a task: its default level and its default λ (settings.default_control)."""
    spec = TASKS[task]
    return level_update(task, spec.level.default), default_control(task)["lipschitz"]


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


def prepare_inputs(task: str, level: float, sr_factor: Any, mask_mode: str, editor: dict | None) -> tuple:
    """The API's ``level`` and ``mask`` from the UI widgets (the SR factor radio and the mask editor)."""
    spec = TASKS[task]
    value = int(sr_factor) if spec.level.choices else level
    mask = mask_from_editor(editor) if spec.needs_mask and mask_mode == "drawn" else None
    return value, mask


def request_seconds(req: RunRequest) -> int:
    """The GPU seconds to ask for ``req`` (demo/budget.py); over the per-call cap, ``gr.Error`` with one line that
    says how many iterations fit at that size."""
    cfg = req.configs["controlled"]
    runs, iterations = len(req.configs), max(c.iterations for c in req.configs.values())
    pixels = budget.padded_pixels(req.task.out_size, 2**cfg.depth)
    graphed = cfg.cuda_graph and graph_start(cfg) is not None
    seconds, cap = budget.run_seconds(pixels, cfg.width, iterations, runs, graphed), budget.cap_seconds()
    if seconds > cap:
        side = max(req.task.out_size)
        fit = budget.max_iterations(side, cfg.width, runs, cap, graphed)
        hint = "; one network alone (compare off) fits twice as many" if runs == 2 else ""
        raise gr.Error(
            f"this run needs about {seconds:.0f} GPU seconds, more than the {cap:.0f} s a call may take: "
            f"at {side} px and width {cfg.width} at most {fit} iterations fit{hint}",
            print_exception=False,
        )
    return math.ceil(seconds)


INTERNAL = "something went wrong on the server ({kind}); it was logged: try again, or with other settings"


def guarded(fn: Callable) -> Callable:
    """``fn`` (an event function: plain, generator, coroutine or async generator) whose errors all reach the visitor as
    one line of ours: a ``gr.Error`` as it is, an ``InputError`` as its line, anything else logged here and answered
    with INTERNAL."""

    @contextlib.contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except gr.Error:
            raise
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - anything else: logged, one line of ours
            logger.exception("event %s failed", getattr(fn, "__name__", fn))
            raise gr.Error(INTERNAL.format(kind=type(err).__name__), print_exception=False) from None

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_generator(*args, **kwargs):  # noqa: ANN202 - the event function's own outputs
            with translated():
                async for item in fn(*args, **kwargs):
                    yield item

        return async_generator
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args, **kwargs):  # noqa: ANN202
            with translated():
                return await fn(*args, **kwargs)

        return coroutine
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):  # noqa: ANN202
            with translated():
                yield from fn(*args, **kwargs)

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):  # noqa: ANN202
        with translated():
            return fn(*args, **kwargs)

    return plain


def checked_request(**kwargs) -> RunRequest:
    """parse_request, with bad input as a one-line ``gr.Error``."""
    try:
        return parse_request(**kwargs)
    except InputError as err:
        raise gr.Error(str(err), print_exception=False) from None


def on_gpu(fn: Callable) -> Callable:
    """``spaces.GPU`` with the run's own duration on ZeroGPU; the function itself elsewhere."""
    if not ZERO_GPU:
        return fn
    import spaces

    return spaces.GPU(duration=gpu_duration)(fn)


def run_lab(
    image: Any,
    task: str = "denoise",
    level: float | None = None,
    lipschitz: float = DEFAULT_CONTROL["lipschitz"],
    upsample: str = DEFAULT_CONTROL["upsample"],
    gaussian_sigma: float = DEFAULT_CONTROL["gaussian_sigma"],
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
    """The streaming ``run`` endpoint: yields the values of RUN_OUTPUTS, in that order, then CAPTION_OUTPUTS'
    (which API clients do not receive). The run itself is
    ``live_run`` (on ZeroGPU in a GPU worker process); here, in the server's process, its Stop flag lives, and
    its frames wait while the visitor has not read the last ones (``turns.Reader``): a run nobody reads stops."""
    session = getattr(request, "session_hash", None)
    key = session or uuid.uuid4().hex
    if STOPS.stopped_before_start(key):
        raise gr.Error("stopped while it waited in the queue: the run did not start", print_exception=False)
    flag = STOPS.start(key)
    reader = Reader(turns_of(request), session)
    frames = live_run(
        key,
        image,
        task,
        level,
        lipschitz,
        upsample,
        gaussian_sigma,
        iterations,
        seed,
        auto_stop,
        compare,
        observed,
        mask,
        max_side,
        width,
        lr,
    )
    abandoned = False
    try:
        for i, (done, outputs) in enumerate(frames):
            if abandoned:
                continue  # the run ends after its current step; nobody is there for its last frame
            if not (done or i == 0) and reader.gone():
                logger.info("run of session %s stopped: nobody reads it", key[:8])
                abandoned = True
                flag.set()
            elif done or i == 0 or reader.ready():
                yield outputs
    finally:
        frames.close()
        STOPS.finish(key, flag)
        if abandoned and reader.turns is not None:
            reader.turns.drop(session)


def live_run(
    key: str,
    image: Any,
    task: str = "denoise",
    level: float | None = None,
    lipschitz: float = DEFAULT_CONTROL["lipschitz"],
    upsample: str = DEFAULT_CONTROL["upsample"],
    gaussian_sigma: float = DEFAULT_CONTROL["gaussian_sigma"],
    iterations: int = LIMITS.iterations,
    seed: int = 0,
    auto_stop: str = "off",
    compare: bool = True,
    observed: bool = False,
    mask: Any = None,
    max_side: int = LIMITS.max_side,
    width: int = LIMITS.width,
    lr: float = LIMITS.lr,
) -> Iterator[tuple[bool, tuple]]:
    """One live run: checks the request and yields (done, the values of RUN_OUTPUTS + CAPTION_OUTPUTS) per frame.
    On ZeroGPU it
    runs in a GPU worker process for the seconds ``gpu_duration`` asked for and ends on its own just before;
    elsewhere at the device's time limit. ``key`` names its Stop flag (``STOPS``)."""
    req = checked_request(
        image=image,
        task=task,
        level=level,
        lipschitz=lipschitz,
        upsample=upsample,
        gaussian_sigma=gaussian_sigma,
        iterations=iterations,
        seed=seed,
        auto_stop=auto_stop,
        compare=compare,
        observed=observed,
        mask=mask,
        max_side=max_side,
        width=width,
        lr=lr,
    )
    for note in req.notes:
        gr.Warning(note)
    lab = LabRun(req, stop=STOPS.flag(key).is_set, gpu_seconds=request_seconds(req) if GPU_BUDGET else None)
    if lab.baseline.unavailable:
        gr.Warning(lab.baseline.unavailable)
    files = FrameFiles()
    try:
        for i, frame in enumerate(frames.stream(lab.stream(), lab.limits.max_frames)):
            outputs = frame_outputs(frame, files, first=i == 0)
            yield frame.done, tuple(outputs[k] for k in RUN_OUTPUTS + CAPTION_OUTPUTS)
    except gr.Error:
        raise
    except torch.OutOfMemoryError:
        raise gr.Error(
            "the run ran out of memory: try a smaller image or a narrower network", print_exception=False
        ) from None


def frame_outputs(frame: Frame, files: FrameFiles, first: bool) -> dict:
    """Widget values for one frame, by name (RUN_OUTPUTS and CAPTION_OUTPUTS): images as PNG files written by
    ``files``; the first also sets the labels (and clears the downloads); later ones send plain values, so API
    clients get file paths; unchanged widgets are skipped."""
    run = frame.run
    results = {name: files(name, img) for name, img in frame.results.items()}
    vanilla, result = results.get("vanilla"), results["controlled"]
    out = dict(curves=frame.curves, spectrum=frame.spectrum, status=frame.status, result=result)
    out.update(result_caption=frame.captions["controlled"], vanilla_caption=frame.captions.get("vanilla", gr.skip()))
    out["files"] = write_downloads(run, animation=frame.animation) if frame.done else None if first else gr.skip()
    if not first:
        skip = gr.skip()
        return dict(out, observation=skip, vanilla=skip if vanilla is None else vanilla, clean=skip, baseline=skip)
    labels = {name: t.label for name, t in run.tracks.items()}
    return dict(
        out,
        observation=gr.update(value=files("observation", run.observation), label=frames.observation_label(run)),
        vanilla=gr.update(visible=False)
        if vanilla is None
        else gr.update(value=vanilla, label=labels["vanilla"], visible=True),
        vanilla_caption=gr.update(visible=False)
        if vanilla is None
        else gr.update(value=frame.captions["vanilla"], visible=True),
        result=gr.update(value=result, label=labels["controlled"]),
        clean=gr.update(value=files("clean", run.clean), visible=run.clean is not None),
        baseline=baseline_update(run, files),
    )


def baseline_update(run: RunData, files: FrameFiles) -> dict:
    """The baseline panel: OpenCV's result (hidden when it could not run)."""
    b = run.baseline
    return gr.update(value=files("baseline", b.image), label=frames.baseline_label(run), visible=b.image is not None)


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


def default_image() -> str:
    """The example image the page opens with."""
    return str(DEFAULT_EXAMPLE)


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
        values = dict(
            task=task,
            level_slider=spec.level.check(c.get("level")),
            lipschitz=RunConfig.check("lipschitz", c.get("lipschitz", 0.0), lim.lipschitz_cap),
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


def gpu_duration(*args, **kwargs) -> int:
    """ZeroGPU's ``duration`` of a live_run call, called with the same arguments (it has live_run's signature)
    before any GPU is taken: the run's GPU seconds; bad input and requests over the cap are refused here."""
    bound = LIVE_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    return request_seconds(checked_request(**{k: v for k, v in bound.arguments.items() if k != "key"}))


RUN_SIGNATURE = inspect.signature(run_lab)
LIVE_SIGNATURE = inspect.signature(live_run)
gpu_duration.__signature__ = LIVE_SIGNATURE
live_run = on_gpu(live_run)
#: run_lab's inputs by name (its parameters; Gradio passes them in this order)
RUN_INPUTS = tuple(p for p in RUN_SIGNATURE.parameters if p != "request")
