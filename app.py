"""Hugging Face Space entry point: build the Gradio app and serve it on 0.0.0.0:7860."""

from __future__ import annotations

import os

import gradio as gr

import dip_core


def build_demo() -> gr.Blocks:
    """A placeholder page until the live lab lands (see the app issue)."""
    with gr.Blocks(title="Spectral Bias Lab") as demo:
        gr.Markdown(
            "# Spectral Bias Lab\nThe live app is being built. Meanwhile, the engine runs from the command line:"
            " `python -m dip_core run --task denoise --image assets/house256.png --out out/`."
            f"\n\nTasks available: {', '.join(dip_core.TASKS)}."
        )
    return demo


if __name__ == "__main__":
    build_demo().launch(server_name="0.0.0.0", server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
