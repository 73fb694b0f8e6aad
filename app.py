"""Hugging Face Space entry point: build the Spectral Bias Lab and serve it on 0.0.0.0:7860."""

from __future__ import annotations

import os

try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; optional elsewhere
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pass

import gradio as gr
import torch

from demo.ui import build_demo, launch_options

QUEUE_SIZE = 16  # requests waiting beyond this are refused ("queue full")


def make_app(queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The app with its queue configured (one run at a time, ``queue_size`` waiting; Stop runs beside it)."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first Adam imports torch._dynamo (seconds)
    return build_demo().queue(max_size=queue_size, default_concurrency_limit=1)


if __name__ == "__main__":
    make_app().launch(
        server_name="0.0.0.0",
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        **launch_options(),
    )
