"""The installable package: the wheel holds the engine, the app and the example images (not tests/ or benchmarks/);
installed into a fresh venv, its two commands work from outside the checkout; its extras match requirements*.txt."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image

from demo.examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
# not source (environments, caches, outputs): the copy the wheel is built from leaves them out
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "test-artifacts",
    "out",
    "runs",
)
#: in requirements.txt but imported nowhere in dip_core/ or demo/, so not a dependency of the package (none now:
#: imageio, listed once for nothing, was dropped)
UNUSED: set[str] = set()


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` without PYTHONPATH (imports come from the interpreter's own paths); fail on non-zero."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (setuptools writes build/ and *.egg-info beside the sources)."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCE)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            tmp / "src",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            tmp / "dist",
        ],
        cwd=tmp,
    )
    (whl,) = (tmp / "dist").glob("spectral_bias_lab-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, Path]:
    """A fresh venv with the wheel installed (no deps); it sees this environment's packages through a .pth file."""
    tmp = tmp_path_factory.mktemp("installed")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    paths = json.loads(
        _run([python, "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"], cwd=tmp).stdout
    )
    # --system-site-packages would give the base interpreter's packages, not this venv's: point at them instead.
    # Lines of a .pth go after the new venv's own site-packages, so the installed copy wins over anything here.
    Path(paths["purelib"], "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --force-reinstall: an install of this version seen through the .pth (say, an editable one) would make pip skip
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            "--disable-pip-version-check",
            "-q",
            wheel,
        ],
        cwd=tmp,
    )
    work = tmp / "work"  # the commands run here, outside the checkout
    work.mkdir()
    assert ROOT not in work.resolve().parents
    return {"venv": env_dir.resolve(), "python": python, "scripts": Path(paths["scripts"]), "work": work}


def test_wheel_holds_the_packages_and_the_examples_only(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("dip_core/__init__.py", "dip_core/cli.py", "demo/__init__.py", "demo/app.py", "demo/ui.py"):
        assert module in names
    for file, *_ in EXAMPLES:
        assert f"demo/assets/{file}" in names
    replays = [
        p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets" / "replays").rglob("*") if p.is_file()
    ]
    assert "replays/manifest.json" in replays and {f"demo/assets/{f}" for f in replays} <= names  # every replay file
    tops = {n.split("/")[0] for n in names}
    assert all(t in ("dip_core", "demo") or t.endswith(".dist-info") for t in tops), tops
    assert not {"tests", "benchmarks", "assets", "docs", "app.py"} & tops


def _metadata_requirements(wheel: Path) -> dict[str, dict[str, Requirement]]:
    """Requires-Dist of the wheel by extra ("" = the dependencies), each {canonical name: requirement}."""
    (meta,) = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA")]
    msg = Parser().parsestr(zipfile.ZipFile(wheel).read(meta).decode())
    groups: dict[str, dict[str, Requirement]] = {"": {}, **{e: {} for e in msg.get_all("Provides-Extra", [])}}
    for line in msg.get_all("Requires-Dist", []):
        req = Requirement(line)
        extra = next((e for e in groups if e and req.marker and req.marker.evaluate({"extra": e})), "")
        req.marker = None
        groups[extra][canonicalize_name(req.name)] = req
    return groups


def _file_requirements(name: str) -> tuple[dict[str, Requirement], list[str]]:
    """A requirement file's own lines {canonical name: requirement} and the files it includes with ``-r``."""
    own, included = {}, []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            included.append(line[2:].strip())
        elif line:
            req = Requirement(line)
            own[canonicalize_name(req.name)] = req
    return own, included


def test_extras_agree_with_the_requirement_files(wheel):
    meta = _metadata_requirements(wheel)
    runtime, inc = _file_requirements("requirements.txt")
    assert inc == []
    sweep, inc = _file_requirements("requirements-sweep.txt")
    assert inc == []
    dev, inc = _file_requirements("requirements-dev.txt")
    assert sorted(inc) == ["requirements-sweep.txt", "requirements.txt"]

    def specs(reqs: dict[str, Requirement]) -> dict[str, str]:
        return {n: str(r.specifier) for n, r in reqs.items()}

    # requirements.txt = the dependencies + [app], less what no code imports; torch a range here, a pin there
    package_runtime = {**meta[""], **meta["app"]}
    assert set(package_runtime) == set(runtime) - UNUSED
    for name in UNUSED:
        assert not any(name in p.read_text() for p in [*ROOT.glob("dip_core/*.py"), *ROOT.glob("demo/*.py")])
    pin = next(iter(runtime["torch"].specifier)).version
    assert str(runtime["torch"].specifier) == f"=={pin}" and meta[""]["torch"].specifier.contains(pin)
    assert "==" not in str(meta[""]["torch"].specifier)
    del package_runtime["torch"], runtime["torch"]
    assert specs(package_runtime) == specs({n: r for n, r in runtime.items() if n not in UNUSED})

    assert specs(meta["sweep"]) == specs(sweep)
    # [dev] = requirements-dev.txt's own lines and, as its -r lines do, [app] and [sweep]
    self_ref = meta["dev"].pop("spectral-bias-lab")
    assert self_ref.extras == {"app", "sweep"}
    assert specs(meta["dev"]) == specs(dev)


def test_installed_commands_run_outside_the_checkout(installed):
    work, scripts = installed["work"], installed["scripts"]
    image = work / "tiny.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(image)
    _run(
        [
            scripts / "dip-core",
            "run",
            "--task",
            "denoise",
            "--image",
            image,
            "--out",
            work / "out",
            "--iters",
            5,
            "--every",
            5,
            "--preset",
            "cpu",
            "--width",
            8,
            "--quiet",
        ],
        cwd=work,
    )
    for name in ("result.png", "metrics.jsonl", "summary.json"):
        assert (work / "out" / name).is_file(), name
    assert json.loads((work / "out" / "summary.json").read_text())["iterations"] == 5

    usage = _run([scripts / "spectral-bias-lab", "--help"], cwd=work, timeout=60).stdout
    assert usage.startswith("usage: spectral-bias-lab") and "--port" in usage


def test_installed_imports_and_examples_come_from_the_venv(installed):
    code = (
        "import json, dip_core, demo, demo.app, demo.experiments, demo.examples as e; "
        "print(json.dumps([dip_core.__file__, demo.__file__, demo.app.__file__, str(e.ASSETS), str(e.DEFAULT_EXAMPLE),"
        " all((e.ASSETS / f).is_file() for f, *_ in e.EXAMPLES) and demo.experiments.replays() is not None]))"
    )
    *files, assets, default, all_found = json.loads(
        _run([installed["python"], "-c", code], cwd=installed["work"]).stdout
    )
    for f in [*files, assets, default]:
        path = Path(f).resolve()
        assert installed["venv"] in path.parents and ROOT not in path.parents, f
    assert Path(default).is_file() and Path(assets).name == "assets" and Path(assets).parent.name == "demo"
    assert all_found
