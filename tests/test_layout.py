"""The codebase's shape: a task is one module, ranges live once, nothing cites a file that is not here."""

from __future__ import annotations

import ast
import importlib
import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dip_core
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


# --- the shape (issue 34): parameters, circles, lengths, one door to the benchmarks, a complete map ---

APP_FILES = [*sorted((ROOT / "demo").glob("*.py")), ROOT / "app.py"]
ENGINE_FILES = sorted((ROOT / "dip_core").rglob("*.py"))
BENCH_FILES = sorted((ROOT / "benchmarks").glob("*.py"))
MAX_PARAMETERS = 8  # a function of demo/ takes a request object, not its fields one by one
MAX_LINES = 80  # a function of dip_core/ and demo/ reads on one screen


def _functions(path: Path):
    """Every function (methods and nested ones too) of a file, with the file's name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    bound = 1 if names[:1] in (["self"], ["cls"]) else 0
    return len(names) - bound + (a.vararg is not None) + (a.kwarg is not None)


def test_no_function_of_the_app_takes_more_than_eight_parameters():
    """The run's values travel as one request object: a new control is one field, not four edits in lockstep."""
    wide = [
        f"{p.relative_to(ROOT)}:{fn.lineno} {fn.name} ({_parameters(fn)})"
        for p in APP_FILES
        for fn in _functions(p)
        if _parameters(fn) > MAX_PARAMETERS
    ]
    assert not wide, wide


def test_no_function_of_the_engine_or_the_app_is_longer_than_a_screen():
    long = [
        f"{p.relative_to(ROOT)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for p in [*ENGINE_FILES, *APP_FILES]
        for fn in _functions(p)
        if fn.end_lineno - fn.lineno + 1 > MAX_LINES
    ]
    assert not long, long


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """The dip_core modules a file imports at its top, and those it imports inside a function (file:line)."""
    tree = ast.parse(path.read_text())
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    top, inner = set(), []
    nested = {id(n) for fn in _functions(path) for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names]
            targets = [
                n
                if (ROOT / n.replace(".", "/")).with_suffix(".py").exists() or (ROOT / n.replace(".", "/")).is_dir()
                else base
                for n in names
            ]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        targets = {t for t in targets if t.split(".")[0] == "dip_core"}
        if not targets:
            continue
        if id(node) in nested:
            inner.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        top |= targets
    return top, inner


def test_the_engine_has_no_import_circle_and_imports_at_the_top():
    """Each dip_core module imports its own package's modules at the top of the file, and the imports run one way."""
    graph, inner = {}, []
    for p in ENGINE_FILES:
        top, late = _imports(p)
        graph[_module_name(p)] = top - {_module_name(p)}
        inner += late
    assert not inner, f"imports of dip_core inside functions: {inner}"

    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if n == "dip_core" or n not in graph:
                continue  # the package's face imports everything; a module importing it is not a circle of modules
            if state.get(n) == 1:
                return [*path, m, n]
            if n not in state and (cycle := visit(n, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m, [])):
            pytest.fail(" → ".join(cycle))


def test_no_local_name_shadows_an_import():
    """A local called like an imported module or function hides it for the rest of the function."""
    shadows = []
    for p in [*APP_FILES, *ENGINE_FILES]:
        tree = ast.parse(p.read_text())
        imported = {
            (a.asname or a.name).split(".")[0]
            for n in tree.body
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        }
        for fn in _functions(p):
            a = fn.args
            local = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
            local |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            shadows += [f"{p.relative_to(ROOT)}:{fn.lineno} {fn.name}: {name}" for name in sorted(local & imported)]
    assert not shadows, shadows


def test_display_labels_are_not_parsed_back():
    """A track carries its short name (``Track.short``); no code splits a label it made to find the name again."""
    parse = re.compile(r"label\w*\.(?:r?split|partition|rpartition)\(")
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in APP_FILES
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if parse.search(line)
    ]
    assert not found, found


MAX_BENCHMARK_LINES = 4000  # the tool, not an archive: retired scripts live in git history, their reports stay


def test_the_benchmarks_have_one_door():
    """`python -m benchmarks COMMAND` is the only way in: no module has a `__main__` of its own, no text names one."""
    mains = [
        p.name
        for p in BENCH_FILES
        if p.name != "__main__.py" and re.search(r"^if __name__ == .__main__.:", p.read_text(), re.M)
    ]
    assert not mains, mains
    doors = [
        f"{p.relative_to(ROOT)}" for p in _reader_files() if re.search(r"python3? -m benchmarks\.\w", p.read_text())
    ]
    assert not doors, doors
    assert sum(len(p.read_text().splitlines()) for p in BENCH_FILES) < MAX_BENCHMARK_LINES
    assert not (ROOT / "benchmarks" / "reports").exists(), "reports live in their own top-level folder"


def _reader_files():
    """What a reader or a visitor meets: the README, docs, the engine's, app's and tools' code, the packaging."""
    yield from (ROOT / "README.md", ROOT / "app.py", ROOT / "pyproject.toml", *ROOT.glob("requirements*.txt"))
    for folder in ("docs", "dip_core", "demo", "benchmarks"):
        yield from (p for p in sorted((ROOT / folder).rglob("*")) if p.suffix in {".py", ".md", ".sh"})


def test_the_layout_page_names_every_module():
    """docs/layout.md has a line for every module of dip_core/, demo/ and benchmarks/."""
    text = (ROOT / "docs" / "layout.md").read_text()
    missing = [
        str(p.relative_to(ROOT))
        for folder in ("dip_core", "demo", "benchmarks")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name != "__init__.py"
        and f"`{p.relative_to(ROOT / folder)}`" not in text
        and f"`{p.relative_to(ROOT)}`" not in text
    ]
    assert not missing, f"docs/layout.md does not name: {missing}"


#: Each concern of the app in its own module (events.py keeps the page's plain event functions).
HOMES = {
    "demo.form": ["RunForm"],
    "demo.live": ["live_run", "frame_outputs"],
    "demo.gpu": ["gpu_duration", "on_gpu", "request_seconds"],
    "demo.errors": ["guarded", "checked_request"],
    "demo.guards": ["image_input", "guard_inputs", "RequestGuard"],
    "demo.events": ["run_lab", "request_stop", "load_config", "on_task_change"],
    "demo.links": ["parse", "query", "wire", "Link"],
}


def test_each_concern_of_the_app_has_one_module():
    for home, names in HOMES.items():
        module = importlib.import_module(home)
        for name in names:
            assert getattr(module, name).__module__ == home, f"{name} belongs in {home}"
    patched = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p in APP_FILES
        if p.name != "guards.py"
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Attribute) and t.attr in {"preprocess", "postprocess", "api_info", "process_example"}
    ]
    assert not patched, f"Gradio is patched only in demo/guards.py: {patched}"


def test_the_app_and_the_benchmarks_take_the_engines_names_from_its_face():
    """A name ``dip_core`` exports is imported from ``dip_core``, not from the module behind it (one door per name)."""
    behind = []
    for p in [*APP_FILES, *BENCH_FILES]:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dip_core."):
                module = importlib.import_module(n.module)
                behind += [
                    f"{p.relative_to(ROOT)}:{n.lineno} {a.name} from {n.module}"
                    for a in n.names
                    if a.name in dip_core.__all__ and getattr(dip_core, a.name) is getattr(module, a.name, None)
                ]
    assert not behind, behind
