"""Start the app: ``make_app()`` and ``main()``, the ``spectral-bias-lab`` command (app.py, the Space's entry,
calls it).

gradio, torch and the UI are imported inside the functions, after ``spaces``: ZeroGPU wants ``spaces`` imported
before anything touches CUDA, and ``spectral-bias-lab --help`` answers without the seconds that gradio takes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

QUEUE_SIZE = 8  # live runs that may wait behind the running one (demo/turns.py: LIVE_WAITING)


def import_spaces() -> None:
    """Import Hugging Face's ``spaces`` (ZeroGPU) when it is installed; elsewhere it is optional."""
    try:
        import spaces  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        pass


def make_app(queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The app with its queue configured: one live run at a time, ``queue_size`` waiting, half of them at most from
    one address and one per visitor (demo/turns.py); replays and the other events are never refused by live runs."""
    import_spaces()
    import torch

    from .settings import LIMITS
    from .turns import Turns
    from .ui import build_demo
    from .worker import WORKERS

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first Adam imports torch._dynamo (seconds)
    # Gradio summarises the finished events for its monitoring page (its operator's, behind a key printed in the
    # server's log) after every event: a pandas table of up to 10,000 of them each time, a class's worth of CPU.
    # Once per 10,000 events here
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "10000")
    # api_open off: the REST routes (/gradio_api/run/...) would answer outside the queue and its turns; gradio_client
    # and the page use the queue
    demo = build_demo().queue(default_concurrency_limit=1, api_open=False)
    Turns(demo, waiting=queue_size, share=max(1, queue_size // 2)).install()
    if LIMITS.worker:  # the live runs' worker process, started now: its imports take seconds (demo/worker.py)
        WORKERS.warm()
    return demo


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="spectral-bias-lab",
        description="Start the Spectral Bias Lab (Gradio app); open http://localhost:PORT/ in a browser.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0, every interface)")
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="port (default: $GRADIO_SERVER_PORT, else 7860)",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=QUEUE_SIZE,
        help=f"live runs waiting at most (default {QUEUE_SIZE}; one address: half of them)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, build the app and serve it until interrupted."""
    args = build_parser().parse_args(argv)
    import_spaces()
    from .examples import ASSETS
    from .ui import launch_options

    # Gradio serves files only from the working directory, the temp directory and allowed_paths; an installed
    # package's example images are in site-packages, so they are allowed explicitly.
    options = launch_options()
    options["allowed_paths"] = [*options.get("allowed_paths", []), str(ASSETS)]
    make_app(args.queue_size).launch(server_name=args.host, server_port=args.port, **options)
    return 0
