"""ZeroGPU's conditions without a GPU or Hugging Face: the budget, values that cross a process boundary, CUDA
that looks available with no device, and Stop across processes."""

from __future__ import annotations

import inspect
import json
import math
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
from helpers import run_lab_in_child

from demo import budget, events, gpu, live
from demo.deploy import SPACE_PYTHON, SPACE_TORCH
from demo.deploy import budget as deploy_budget
from demo.deploy import main as deploy_main
from demo.form import RUN_OUTPUTS, RunForm
from demo.inputs import parse_request
from demo.session import STOPS
from demo.settings import limits_for

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(max_side=32, width=8, lr=0.01)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def same(a, b) -> bool:
    """Deep equality of what a run yields: arrays by value, figures by their JSON once both are normalised by
    Plotly's constructor (unpickling expands a named colour scale such as "Viridis" into its list)."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, go.Figure):

        def norm(f: go.Figure) -> dict:
            return json.loads(go.Figure(f.to_dict()).to_json())

        return isinstance(b, go.Figure) and norm(a) == norm(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_value_a_run_yields_pickles_to_the_same_thing(tiny_png):
    """On ZeroGPU each yielded value crosses from the GPU worker to the server by pickle."""
    outputs = [out for _, out in live.live_run("pickle-test", RunForm(tiny_png, iterations=20, compare=True, **TINY))]
    assert len(outputs) >= 2 and outputs[-1][RUN_OUTPUTS.index("status")].startswith("Done")
    for out in outputs:
        assert same(out, pickle.loads(pickle.dumps(out)))


def test_the_duration_callable_takes_the_runs_arguments(tiny_png):
    """spaces.GPU calls ``duration`` with the GPU function's own arguments: its stop key and the whole form."""
    duration = inspect.signature(gpu.gpu_duration).parameters
    api = inspect.signature(inspect.unwrap(live.live_run)).parameters
    assert list(duration) == list(api) == ["key", "form"]
    seconds = gpu.gpu_duration("key", RunForm(tiny_png, iterations=100, max_side=32, width=8, lr=0.01))
    assert isinstance(seconds, int) and 0 < seconds <= budget.cap_seconds()
    with pytest.raises(gr.Error, match="lipschitz"):
        gpu.gpu_duration("key", RunForm(tiny_png, lipschitz=float("nan")))  # refused before any GPU is taken


def test_a_request_over_the_cap_is_refused_with_what_fits(house, monkeypatch):
    """Over the cap: one line saying how many iterations fit at that size; at that many, the request passes."""
    lim = limits_for("cuda", zero_gpu=True)
    side, width = lim.max_side, lim.width
    n = budget.max_iterations(side, width, runs=2)
    assert n > lim.iterations  # the default fits, with room
    ok = parse_request(house, iterations=n, max_side=side, width=width, compare=True, limits=lim)
    assert gpu.request_seconds(ok) <= budget.cap_seconds()
    over = parse_request(house, iterations=n + 50, max_side=side, width=width, compare=True, limits=lim)
    with pytest.raises(gr.Error) as err:
        gpu.request_seconds(over)
    message = str(err.value)
    assert "\n" not in message and f"at {side} px" in message and f"at most {n} iterations" in message
    monkeypatch.setenv(budget.CAP_ENV, "120")  # a Space whose visitors have more quota
    assert budget.max_iterations(side, width, runs=2) > 2 * n - 10
    assert gpu.request_seconds(over) <= 120


def test_the_default_gpu_run_asks_for_at_most_30_seconds():
    lim = limits_for("cuda", zero_gpu=True)
    seconds = budget.run_seconds(lim.max_side**2, lim.width, lim.iterations, runs=2)
    assert seconds <= 30
    assert lim.iterations_cap == budget.max_iterations(lim.max_side, lim.width, runs=1)
    # measured GPUs cost less than unmeasured ones; a larger image or a wider network costs more
    assert budget.run_seconds(256**2, 128, 500, 2, gpu=budget.REFERENCE.gpu) < budget.run_seconds(
        256**2, 128, 500, 2, gpu="other"
    )
    assert budget.run_seconds(512**2, 128, 500, 2) > budget.run_seconds(256**2, 128, 500, 2)
    assert budget.run_seconds(256**2, 128, 500, 2) > budget.run_seconds(256**2, 64, 500, 2)


def test_deploy_budget_prints_one_json_line(capsys):
    assert deploy_main(["--budget"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    b = json.loads(line)
    assert b["default_gpu_seconds"] <= 30 and b["max_gpu_seconds"] == budget.cap_seconds()
    assert set(b["default"]) == {"size", "width", "iterations", "compare"} and b["gpu"]


def test_the_duration_factor_is_the_one_spaces_charges_on_the_default_size():
    """spaces' configs.json: the RTX PRO 6000 (ZeroGPU's ``large``, half the card) is charged duration_factor ×
    the declared duration; read from the installed package without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("spaces")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("spaces is not installed")
    configs = Path(next(iter(spec.submodule_search_locations))) / "zero" / "configs.json"
    if not configs.is_file():
        pytest.skip("this spaces has no zero/configs.json")
    entry = next(c for c in json.loads(configs.read_text()) if "RTX PRO 6000" in c["model"])
    assert entry["duration_factor"] == budget.ZERO_GPU_DURATION_FACTOR


def test_the_default_gpu_run_leaves_an_anonymous_visitor_three_runs_a_day(house):
    assert budget.quota_seconds(28) == 42 and budget.quota_seconds(60) == 90  # the cap costs 90 s of 120
    assert budget.runs_per_day(28) == 2 and budget.runs_per_day(26) == 3 and budget.runs_per_day(60) == 1
    lim = limits_for("cuda", zero_gpu=True)
    declared = math.ceil(budget.run_seconds(lim.max_side**2, lim.width, lim.iterations, runs=2))
    assert declared <= 26 and budget.runs_per_day(declared) >= 3
    req = parse_request(
        house, iterations=lim.iterations, max_side=lim.max_side, width=lim.width, compare=True, limits=lim
    )
    assert gpu.request_seconds(req) == declared  # what spaces.GPU is asked for: House is 256²
    assert budget.quota_note(26) == "quota 39 s of the visitor's 120 s a day (26 s × 1.5)"
    assert budget.quota_note(25.5) == "quota 38.2 s of the visitor's 120 s a day (25.5 s × 1.5)"
    b = json.loads(json.dumps(deploy_budget()))
    assert b["duration_factor"] == budget.ZERO_GPU_DURATION_FACTOR
    assert b["default_quota_seconds"] == budget.quota_seconds(declared) <= 39
    assert b["default_runs_per_day_anonymous"] == budget.runs_per_day(declared) >= 3


def test_deploy_writes_a_zerogpu_space(tmp_path):
    out = tmp_path / "space"
    with pytest.raises(SystemExit, match="OWNER/NAME"):
        deploy_main(["--out", str(out), "--space", "no slash"])
    assert not out.exists()  # refused before anything was written
    assert deploy_main(["--out", str(out), "--space", "lab-owner/spectral-bias-lab"]) == 0
    readme = (out / "README.md").read_text()
    front = readme.split("---")[1]
    assert "sdk: gradio" in front and f'python_version: "{SPACE_PYTHON}"' in front and "app_file: app.py" in front
    assert "suggested_hardware" not in front
    # the README's own front matter (title, tags) kept; the thumbnail: the Space's own screenshot, an absolute URL
    ours = (ROOT / "README.md").read_text().split("---")[1]
    assert "title: Spectral Bias Lab" in front and "  - deep-image-prior" in front and "  - education" in ours
    shot = "https://huggingface.co/spaces/lab-owner/spectral-bias-lab/resolve/main/assets/screenshot.png"
    assert f"thumbnail: {shot}" in front and (out / "assets" / "screenshot.png").is_file()
    assert readme.split("---", 2)[2].lstrip("\n").startswith("# Spectral Bias Lab")
    gradio_pin = next(
        line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("gradio==")
    )
    assert f"sdk_version: {gradio_pin.split('==')[1]}" in front
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert f"torch=={SPACE_TORCH}" in reqs and any(r.startswith("spaces==") for r in reqs)
    assert not any(r.startswith("gradio") for r in reqs)
    for path in ("app.py", "dip_core/engine.py", "dip_core/tasks/denoise.py", "demo/ui.py", "assets/house256.png"):
        assert (out / path).is_file(), path
    assert not list(out.rglob("__pycache__"))
    # the Space's app imports from its own folder
    code = "import app, demo.examples as e; print(e.ASSETS)"
    p = subprocess.run(
        [sys.executable, "-c", code],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(out)},
    )
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == out / "assets"
    with pytest.raises(SystemExit, match="not empty"):
        deploy_main(["--out", str(out)])


CUDA_LOOKS_AVAILABLE = """
import functools, sys, types
import torch

# the spaces package's ZeroGPU mode needs a CUDA build of torch and Hugging Face's device API: stand in for its
# decorator as it behaves (functools.wraps, ``duration`` called with the handler's arguments, then the generator)
durations = []
def GPU(fn=None, duration=60):
    def decorate(task):
        @functools.wraps(task)
        def handler(*args, **kwargs):
            durations.append(duration(*args, **kwargs) if callable(duration) else duration)
            yield from task(*args, **kwargs)
        return handler
    return decorate(fn) if fn is not None else decorate
sys.modules["spaces"] = types.SimpleNamespace(GPU=GPU)
torch.cuda.is_available = lambda: True   # ZeroGPU outside a GPU call: CUDA looks available, no device is there
torch.cuda.device_count = lambda: 1
def no_device(*a, **k):
    raise RuntimeError("no CUDA device in this process")
torch.cuda.get_device_name = no_device
import httpx
from benchmarks import load
from demo.settings import LIMITS
assert LIMITS.device == "cuda", LIMITS
demo, url = load.serve(4)  # app.py's make_app, as the Space starts it
r = httpx.get(url, timeout=30)
from demo import live
from demo.form import RunForm
assert live.live_run.__wrapped__ and RunForm.names()[0] == "image" and "lr" in RunForm.names()
client_api = httpx.get(url.rstrip("/") + "/gradio_api/info", timeout=30).json()
assert "/run" in client_api["named_endpoints"], client_api
print("RESULT", LIMITS.device, LIMITS.max_side, LIMITS.iterations, r.status_code)
demo.close()
"""


def test_the_app_imports_and_serves_when_cuda_looks_available_without_a_device():
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "GRADIO_ANALYTICS_ENABLED": "False"}
    p = subprocess.run(
        [sys.executable, "-c", CUDA_LOOKS_AVAILABLE], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env
    )
    assert p.returncode == 0, p.stderr[-2000:]
    line = next(line for line in p.stdout.splitlines() if line.startswith("RESULT"))
    device, side, iterations, status = line.split()[1:]
    assert device == "cuda" and status == "200"
    lim = limits_for("cuda", zero_gpu=True)
    assert (int(side), int(iterations)) == (lim.max_side, lim.iterations)


def test_stop_reaches_a_run_in_another_process_and_keeps_the_downloads(tiny_png):
    """ZeroGPU runs the generator in a worker process: Stop (served by the main process) must still reach it,
    and the run must end with its result and downloads rather than being cancelled."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    key = "zerogpu-stop-test"
    flag = STOPS.start(key)  # run_lab's part in the server's process: the run's flag, which Stop finds
    child = ctx.Process(target=run_lab_in_child, args=(queue, key, dict(image=tiny_png, iterations=5000, **TINY)))
    child.start()
    try:
        kind, value = queue.get(timeout=120)
        assert kind == "frame", value
        for _ in range(2):
            assert queue.get(timeout=60)[0] == "frame"
        events.request_stop(type("Request", (), {"session_hash": key})())
        last = None
        while True:
            kind, value = queue.get(timeout=60)
            if kind != "frame":
                break
            last = value
        assert kind == "end", value
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
        STOPS.finish(key, flag)
    assert not flag.path.exists()  # the flag's file goes with its run
    status = last[RUN_OUTPUTS.index("status")]
    files = last[RUN_OUTPUTS.index("files")]
    assert status.startswith("Stopped at iteration"), status
    assert {os.path.basename(f) for f in files} >= {"result.png", "log.csv", "config.json"}
    assert all(os.path.isfile(f) for f in files)


def test_a_run_ends_when_its_requested_gpu_time_runs_out(tiny_png):
    """The GPU call is cut off at its duration: the run ends on its own just before, keeping what it reached."""
    from demo.frames import stream
    from demo.session import LabRun

    lab = LabRun(parse_request(tiny_png, iterations=5000, compare=False, **TINY), gpu_seconds=4)
    frames = list(stream(lab.stream()))
    assert frames[-1].done and lab.current_iter < 5000
    assert "GPU time" in frames[-1].status and "ran out" in frames[-1].status
    assert "of 4 s requested" in frames[-1].status
