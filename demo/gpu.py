"""A live run's GPU call on ZeroGPU: ``on_gpu`` asks ``spaces.GPU`` for the run's own seconds (``gpu_duration``,
``request_seconds``, from demo/budget.py), before any GPU is taken."""

from __future__ import annotations

import math
from collections.abc import Callable

import gradio as gr

from dip_core.engine import graph_start

from . import budget
from .errors import checked_request
from .form import RunForm
from .inputs import RunRequest
from .settings import ZERO_GPU


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


def gpu_duration(key: str, form: RunForm) -> int:
    """ZeroGPU's ``duration`` of a ``live_run(key, form)`` call, called with its arguments before any GPU is taken:
    the run's GPU seconds; bad input and requests over the cap are refused here."""
    return request_seconds(checked_request(form))


def on_gpu(fn: Callable) -> Callable:
    """``spaces.GPU`` with the run's own duration (``gpu_duration``) on ZeroGPU; the function itself elsewhere."""
    if not ZERO_GPU:
        return fn
    import spaces

    return spaces.GPU(duration=gpu_duration)(fn)
