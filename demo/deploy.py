"""Build a ZeroGPU Space: ``python -m demo.deploy --out DIR [--space OWNER/NAME]`` writes the folder to push to a
Hugging Face Space (OWNER/NAME: for its thumbnail); ``python -m demo.deploy --budget`` prints the GPU budget of
its default run as one JSON line.

The folder holds app.py, the dip_core and demo packages, the example images, a README whose front matter
says ``sdk: gradio`` with the pinned Gradio, and requirements pinning a torch that ZeroGPU supports. ZeroGPU
itself is chosen in the Space's settings (the front matter's ``suggested_hardware`` has no ZeroGPU value).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The torch the Space installs: the newest of ZeroGPU's supported versions (2.8.0, 2.9.1, 2.10.0, 2.11.0).
SPACE_TORCH = "2.11.0"
SPACE_PYTHON = "3.12.12"


def pinned(name: str, requirements: str) -> str:
    """The version ``name`` is pinned to (``name==X``) in a requirements text."""
    match = re.search(rf"^{re.escape(name)}==([^\s#]+)", requirements, flags=re.M)
    if match is None:
        raise ValueError(f"{name} is not pinned with == in requirements.txt")
    return match.group(1)


def space_requirements(requirements: str) -> str:
    """requirements.txt for the Space: torch pinned to SPACE_TORCH (the CUDA build ZeroGPU runs), the rest as
    the repository pins them (gradio comes from the README's sdk_version, so it is left out)."""
    lines = ["# Written by python -m demo.deploy: the ZeroGPU Space's requirements (gradio: README sdk_version)."]
    for line in requirements.splitlines():
        name = re.split(r"[=<>~!\s\[]", line.strip(), maxsplit=1)[0]
        if not name or line.lstrip().startswith("#") or name == "gradio":
            continue
        lines.append(f"torch=={SPACE_TORCH}" if name == "torch" else line.strip())
    if not any(re.match(r"spaces\b", line) for line in lines):
        raise ValueError("requirements.txt must pin spaces (ZeroGPU's decorator)")
    return "\n".join(lines) + "\n"


#: The front matter's keys a Space build writes itself (``space_readme``), replacing the README's
SPACE_KEYS = ("sdk", "sdk_version", "python_version", "app_file", "suggested_hardware", "thumbnail")


def space_readme(readme: str, gradio_version: str, space: str | None = None) -> str:
    """The repository's README with the Space's front matter: the README's own (title, tags, ...) with sdk gradio at
    ``gradio_version``, Python SPACE_PYTHON, app_file app.py, no ``suggested_hardware`` (ZeroGPU is picked in the
    settings) and, for ``space`` ("OWNER/NAME"), the link previews' thumbnail: the Space's own assets/screenshot.png."""
    if not readme.startswith("---"):
        raise ValueError("README.md must start with the Space's front matter (---)")
    _, front, body = readme.split("---", 2)
    kept, skipping = [], False
    for line in front.strip("\n").splitlines():
        if not line.startswith((" ", "-")):  # a key (a list's items and a value's lines follow it, indented)
            skipping = line.split(":", 1)[0].strip() in SPACE_KEYS
        if not skipping:
            kept.append(line)
    ours = ["sdk: gradio", f"sdk_version: {gradio_version}", f'python_version: "{SPACE_PYTHON}"', "app_file: app.py"]
    if space is not None:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", space):
            raise SystemExit(f"error: --space must be OWNER/NAME, got {space!r}")
        ours.append(f"thumbnail: https://huggingface.co/spaces/{space}/resolve/main/assets/screenshot.png")
    return "\n".join(["---", *kept, *ours, "---", ""]) + body.lstrip("\n")


def build(out: Path, space: str | None = None) -> list[Path]:
    """Write the Space folder ``out`` (it must not exist or be empty) for the Space ``space`` ("OWNER/NAME": its
    thumbnail, ``space_readme``); the files written, relative to it."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists and is not empty")
    requirements = (ROOT / "requirements.txt").read_text()
    readme = space_readme((ROOT / "README.md").read_text(), pinned("gradio", requirements), space)
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("dip_core", "demo"):
        shutil.copytree(ROOT / package, out / package, ignore=ignore)
    shutil.copytree(ROOT / "assets", out / "assets", ignore=ignore)
    shutil.copy2(ROOT / "app.py", out / "app.py")
    (out / "requirements.txt").write_text(space_requirements(requirements))
    (out / "README.md").write_text(readme)
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def budget() -> dict:
    """The GPU budget of the Space's default run: its requested and the cap's seconds, the quota it costs (ZeroGPU's
    duration factor × its whole declared seconds) and how many runs a day that leaves an anonymous visitor, its
    settings, and what the cost table was measured on."""
    from . import budget as b
    from .settings import limits_for

    lim = limits_for("cuda", zero_gpu=True)
    table, factor = b.cost_table()
    runs = 2  # the default run compares vanilla with the controlled network
    default = b.run_seconds(lim.max_side**2, lim.width, lim.iterations, runs)
    declared = math.ceil(default)  # spaces.GPU's duration is whole seconds (demo.gpu.request_seconds)
    return {
        "default_gpu_seconds": round(default, 1),
        "default_quota_seconds": b.quota_seconds(declared),
        "duration_factor": b.ZERO_GPU_DURATION_FACTOR,
        "default_runs_per_day_anonymous": b.runs_per_day(declared),
        "max_gpu_seconds": b.cap_seconds(),
        "default": {"size": lim.max_side, "width": lim.width, "iterations": lim.iterations, "compare": True},
        "gpu": table.gpu + ("" if factor == 1 else f" × {factor:g} (the GPU in use is not in the cost table)"),
        "max_iterations_at_default_size": b.max_iterations(lim.max_side, lim.width, runs),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.deploy", description=__doc__.splitlines()[0])
    p.add_argument("--out", help="the Space folder to write")
    p.add_argument("--space", help="OWNER/NAME of the Space: its README's thumbnail (link previews)")
    p.add_argument("--budget", action="store_true", help="print the default run's GPU budget as one JSON line")
    args = p.parse_args(argv)
    if args.budget:
        print(json.dumps(budget()))
        return 0
    if not args.out:
        p.error("give --out DIR (or --budget)")
    files = build(Path(args.out), args.space)
    print(
        f"wrote {len(files)} files to {args.out}: push them to a Gradio Space and pick ZeroGPU in its settings",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
