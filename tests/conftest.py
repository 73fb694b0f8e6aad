"""Shared fixtures: small real images, and the reference test vectors shipped in tests/data."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dip_core.io import load_image

# the suite's own cache of conv_algo="auto" choices (dip_core/autotune.py), not the user's; subprocesses inherit it
os.environ.setdefault("SPECTRAL_BIAS_LAB_CACHE", str(Path(tempfile.mkdtemp(prefix="sbl-cache-")) / "conv_paths.json"))
# under pytest-xdist (the README's -n 2) the workers share the cores: each worker's torch, and the servers and CLIs
# it starts, get their share of threads, not all of them each (oversubscribed, a 2-thread LAPACK test ran 7× slower)
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_share)
    os.environ["OMP_NUM_THREADS"] = str(_share)
    # a live run's worker process yields to its own server (nice 10, demo/worker.py), but the other worker's tests are
    # no visitor of it: beside them a run stepped at 1/20 of its pace and a Stop took over 60 s to end it
    os.environ.setdefault("SPECTRAL_BIAS_LAB_WORKER_NICE", "0")
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def reference_values() -> tuple[dict, dict[str, np.ndarray]]:
    folder = DATA / "reference_values"
    values = json.loads((folder / "values.json").read_text())
    images = {k: np.load(folder / v) for k, v in values["images"].items()}
    return values, images


@pytest.fixture(scope="session")
def house() -> np.ndarray:
    return load_image(ROOT / "assets" / "house256.png")[0]


@pytest.fixture(scope="session")
def house64(house) -> np.ndarray:
    from dip_core.io import resize_max_side

    return resize_max_side(house, 64)[0]


@pytest.fixture(scope="session")
def tiny_png(tmp_path_factory, house64) -> str:
    """A 32×32 crop of House as a PNG file: the app's runs of a few seconds."""
    from dip_core.io import save_png

    path = tmp_path_factory.mktemp("img") / "tiny.png"
    save_png(house64[:32, :32], path)
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def run_worker():
    """A live run's worker process started once per test process and ready (demo/worker.py), as the app starts one
    at launch: its imports (seconds) would otherwise count in the first run's clock."""
    from demo.session import LIMITS
    from demo.worker import WORKERS

    if LIMITS.worker:
        WORKERS.warm(wait=True)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks run faster on one thread, and do not stall when other jobs load the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: What no error a visitor sees may hold: a traceback, an OS error, Gradio's own preprocessing line, a temp path.
LEAKS = ("Traceback", "Errno", "Could not preprocess", tempfile.gettempdir() + "/", 'File "')


@pytest.fixture(autouse=True)
def errors_are_one_line_of_ours(monkeypatch):
    """Every error message the test provokes, in the app (``gr.Error``) or seen by a client (``AppError``), is one
    line with no library text or internal path in it."""
    import gradio as gr
    from gradio_client.exceptions import AppError

    seen: list[str] = []
    for cls in (gr.Error, AppError):
        original = cls.__init__

        def record(self, message="Error raised.", *args, _original=original, **kwargs):
            seen.append(str(message))
            _original(self, message, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", record)
    yield
    bad = [m for m in seen if "\n" in m.strip() or any(k in m for k in LEAKS)]
    assert not bad, f"errors that are not one line of ours: {bad[:3]}"
