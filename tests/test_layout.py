"""The codebase's shape: a task is one module, ranges live once, nothing cites a file that is not here."""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dip_core.tasks as tasks_pkg
from dip_core import InputError, RunConfig, make_task, run_to_end
from dip_core.cli import build_parser, main
from dip_core.config import MAX_ITERATIONS, choices, field_bounds
from dip_core.tasks import TASKS, check_level

ROOT = Path(__file__).resolve().parent.parent

TOY_TASK = '''
"""A test task: y = x / 2 (A halves the image)."""

import torch

from dip_core.tasks.base import Level, Task, TaskSpec, to_tensor


class Halve(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x


class Dim(TaskSpec):
    def degrade(self, clean, level, mask, seed):
        x = to_tensor(clean)
        return Task(self, level, Halve(), 0.5 * x, clean.shape[:2], clean=x)


SPEC = Dim(name="dim", label="Dimming (test)", level=Level("dimming", 0.5, 0.1, 0.9, slider=(0.1, 0.9, 0.1)),
           paper_lipschitz=1.4)
'''


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
    """A sixth task added the way a contributor would: one module in dip_core/tasks/ (here on its search path)."""
    (tmp_path / "dim.py").write_text(textwrap.dedent(TOY_TASK))
    monkeypatch.setattr(tasks_pkg, "__path__", [*tasks_pkg.__path__, str(tmp_path)])
    for name, spec in tasks_pkg._discover().items():
        monkeypatch.setitem(TASKS, name, spec)
    yield "dim"


def test_a_new_task_is_one_module(toy_task, tmp_path, house64):
    """Engine, CLI, app request, session, UI and config loading take the new task with no other change."""
    assert list(TASKS)[-1] == "dim"
    task = make_task("dim", house64)
    snaps = run_to_end(task, RunConfig(iterations=12, every=6, width=8, depth=3, device="cpu"))
    assert snaps[-1].done and snaps[-1].psnr is not None and math.isfinite(snaps[-1].psnr)

    png = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray((house64 * 255).astype(np.uint8)).save(png)
    out = tmp_path / "cli"
    args = [
        "run",
        "--task",
        "dim",
        "--image",
        str(png),
        "--out",
        str(out),
        "--iters",
        "5",
        "--width",
        "8",
        "--preset",
        "paper",
        "--controlled",
        "--quiet",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "dim" and summary["config"]["lipschitz"] == 1.4
    assert summary["baseline"]["unavailable"].startswith("classical baseline unavailable")

    from demo import events, ui
    from demo.frames import stream
    from demo.inputs import parse_request
    from demo.session import LabRun

    req = parse_request(str(png), task="dim", iterations=4, compare=True, max_side=32, width=8)
    frames = list(stream(LabRun(req).stream()))
    assert frames[-1].done and "vanilla" in frames[-1].status
    assert events.on_task_change("dim")[0]["maximum"] == 0.9
    assert ("Dimming (test)", "dim") in ui.task_choices()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"task": "dim", "level": 0.3}))
    loaded = dict(zip(events.CONFIG_WIDGETS, events.load_config(str(config))))
    assert loaded["task"] == "dim" and loaded["level_slider"] == 0.3


def test_no_task_names_outside_the_task_modules():
    """Code outside dip_core/tasks/ reads the specs: no comparisons with a task's name, no per-task tables."""
    name = r"""["'](denoise|jpeg|inpaint|sr|enhance)["']"""
    patterns = [re.compile(r"(==|!=)\s*" + name), re.compile(name + r"\s*:\s"), re.compile(r"\bin \(" + name)]
    offenders = []
    for path in [*ROOT.glob("dip_core/*.py"), *ROOT.glob("demo/*.py")]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in patterns):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_cited_file_exists():
    """README, docs and docstrings name only files that are in the repository (``COMMIT:path``: a file of a commit)."""
    cited = re.compile(
        r"(?<![\w:/])((?:dip_core|demo|benchmarks|tests|docs|assets|reports)/[\w/.-]*\w\.(?:py|md|json|png|sh|txt))"
    )
    sources = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("dip_core/**/*.py"),
        *ROOT.glob("demo/*.py"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("tests/*.py"),
    ]
    missing = set()
    for src in sources:
        for ref in cited.findall(src.read_text()):
            if "*" not in ref and "NAME" not in ref and not (ROOT / ref).exists():
                missing.add(f"{src.relative_to(ROOT)} cites {ref}")
    assert not missing, "\n".join(sorted(missing))
    assert (ROOT / "docs/method.md").is_file()
    for src in sources:
        bare = re.search(r"(?<![/\w])method\.md", src.read_text().replace(r"method\.md", ""))
        assert not bare, f"{src}: cite docs/method.md"


# ------------------------------------------------------------------ one source of ranges
PROBES = {
    "iterations": [0, 1, 10.0, 2.5, MAX_ITERATIONS, MAX_ITERATIONS + 1, "nan", "inf", "x"],
    "seed": [-1, 0, 7, 2**32 - 1, 2**32, 0.5, "nan"],
    "lr": [0, 1e-7, 1e-6, 0.01, 1.0, 1.5, "nan", "-inf"],
    "width": [3, 4, 24, 512, 513, 8.5],
    "lipschitz": [-0.1, 0, 1.4, 100, 100.5, "nan"],
    "gaussian_sigma": [-0.1, 0, 0.5, 10, 11, "inf"],
    "upsample": ["bilinear", "gaussian", "bicubic"],
    "auto_stop": ["off", "paper", "relative", "discrepancy", "soon"],
}
CLI_FLAGS = {"iterations": "--iters", "gaussian_sigma": "--gaussian-sigma", "auto_stop": "--auto-stop"}


def _value(v):
    return float(v) if v in ("nan", "inf", "-inf") else v


def engine_accepts(field: str, value) -> bool:
    try:
        RunConfig(**{field: _value(value)})
    except InputError:
        return False
    return True


def cli_accepts(field: str, value) -> bool:
    flag = CLI_FLAGS.get(field, f"--{field}")
    try:
        build_parser().parse_args(["run", "--task", "denoise", "--image", "x.png", "--out", "o", flag, str(value)])
    except SystemExit:
        return False
    return True


def api_accepts(field: str, value, image, limits_) -> bool:
    from demo.inputs import parse_request

    try:
        parse_request(image, **{field: _value(value)}, compare=False, limits=limits_)
    except InputError as err:
        assert "\n" not in str(err)
        return False
    return True


@pytest.fixture(scope="module")
def opened_limits():
    """The app's limits with every device cap opened to the engine's own range."""
    from dataclasses import replace

    from demo.settings import LIMITS

    return replace(
        LIMITS,
        iterations_cap=MAX_ITERATIONS,
        width_cap=field_bounds("width")[1],
        lipschitz_cap=field_bounds("lipschitz")[1],
        sigma_cap=field_bounds("gaussian_sigma")[1],
    )


@pytest.mark.parametrize("field", list(PROBES))
def test_cli_api_and_engine_accept_and_refuse_the_same_values(field, opened_limits, house64):
    """One range per setting: with the app's device caps opened, the CLI, the API and the engine agree on every
    probe; with the real caps the API accepts a subset of what the engine does."""
    from demo.settings import LIMITS

    for value in PROBES[field]:
        engine = engine_accepts(field, value)
        if field == "auto_stop" and value == "discrepancy":
            continue  # valid everywhere; the API then checks the task has a noise level (test_app_logic)
        assert cli_accepts(field, value) == engine, (field, value)
        assert api_accepts(field, value, house64, opened_limits) == engine, (field, value)
        if not engine:
            assert not api_accepts(field, value, house64, LIMITS), (field, value)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_front_end_takes_the_task_levels_the_spec_takes(task, house64, tmp_path):
    """A task's level: the spec's check decides for make_task, the API and the CLI alike; the UI slider stays
    within it."""
    from PIL import Image

    from demo.inputs import parse_request

    level = TASKS[task].level
    probes = [level.default, level.lo, level.hi, level.lo - 1, level.hi + 1, float("nan"), (level.lo + level.hi) / 2]
    png = tmp_path / "img.png"
    Image.fromarray((house64 * 255).astype(np.uint8)).save(png)
    for value in probes:
        try:
            check_level(task, value)
            spec_ok = True
        except InputError:
            spec_ok = False
        try:
            parse_request(house64, task=task, level=value, compare=False)
            api_ok = True
        except InputError:
            api_ok = False
        args = [
            "run",
            "--task",
            task,
            "--image",
            str(png),
            "--out",
            str(tmp_path / "o"),
            "--level",
            str(value),
            "--iters",
            "1",
            "--width",
            "4",
            "--preset",
            "paper",
            "--quiet",
            "--device",
            "cpu",
        ]
        assert (main(args) == 0) == spec_ok == api_ok, (task, value)
    if level.slider is not None:
        lo, hi, _ = level.slider
        assert level.lo <= lo < hi <= level.hi
    else:
        assert level.choices and all(level.lo <= c <= level.hi for c in level.choices)


def test_the_ui_widgets_stay_within_the_engine_ranges():
    """Every numeric widget's bounds lie inside RunConfig's range, and its top is the API's cap."""
    from demo import ui
    from demo.settings import LIMITS

    demo = ui.build_demo()
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    caps = {
        "iterations": LIMITS.iterations_cap,
        "width": LIMITS.width_cap,
        "lipschitz": LIMITS.lipschitz_cap,
        "sigma": LIMITS.sigma_cap,
        "seed": field_bounds("seed")[1],
        "lr": field_bounds("lr")[1],
    }
    for elem, cap in caps.items():
        widget = by_id[elem]
        field = "gaussian_sigma" if elem == "sigma" else elem
        lo, hi = field_bounds(field)
        assert lo <= widget.minimum and widget.maximum <= hi and widget.maximum == cap, elem
    assert [v for _, v in by_id["auto_stop"].choices] == list(choices("auto_stop"))
    assert [v for _, v in by_id["upsample"].choices] == list(choices("upsample"))


def test_the_readme_python_example_runs(capsys, monkeypatch):
    """The README's Python section runs as written (fewer iterations), so its API calls stay true."""
    monkeypatch.chdir(ROOT)  # its paths are the repository's
    block = (ROOT / "README.md").read_text().split("## Python\n\n```python\n")[1].split("```")[0]
    short = re.sub(r"iterations=\d+", "iterations=10", block)
    assert short.count("iterations=10") >= 3
    exec(compile(short, "README.md (Python)", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3 and lines[-1].split()[0] == "10"  # the stacked pair's last snapshot
