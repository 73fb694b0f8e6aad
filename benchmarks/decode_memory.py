"""Decode memory and time: peak RSS over the idle process and wall time of ``load_image`` on huge uploads.

    python -m benchmarks decode-memory [--sizes 8000 7071] [--sides 32 256] [--cases rgb_flat jpeg ...] [--json]
    python -m benchmarks decode-memory --io /tmp/old_io.py     # the same cases with another copy of dip_core/io.py

Every case is an n×n file, n = 8000 (64 MP) and 7071 (50 MP, ``MAX_PIXELS``) by default: PNGs (RGB flat, RGB
noise, RGBA, palette with transparency, L, 16-bit), a JPEG, and an L mask read by ``load_mask``; written to a
temporary folder and deleted afterwards. Each (case, size, max side) runs in a fresh Python subprocess: the peak is
``ru_maxrss`` after the load minus the RSS after the imports, so it counts everything the decode allocates (file
buffers, the native image, float copies). The files are written by another subprocess, because Linux carries a
parent's peak RSS into ``ru_maxrss`` across fork and exec (``hwm_over_idle_mb``, the child's own VmHWM, cross-checks).
Targets (public Space): ≤ 300 MB over idle and ≤ 2 s per load; the child lifts ``MAX_PIXELS`` so that sizes
past it are measured too (``admitted`` says whether the app would take them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .options import parser

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 300.0
TARGET_S = 2.0

# run in the subprocess: argv = io-module-or-"", path, max_side, kind ("image" or "mask")
CHILD = r"""
import gc, importlib.util, json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np, PIL.Image, PIL.PngImagePlugin, PIL.JpegImagePlugin, PIL.TiffImagePlugin
import dip_core.io as io_mod
if sys.argv[2]:
    spec = importlib.util.spec_from_file_location("dip_core._bench_io", sys.argv[2])
    io_mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = io_mod
    spec.loader.exec_module(io_mod)
path, side, kind = sys.argv[3], int(sys.argv[4]), sys.argv[5]
io_mod.MAX_PIXELS = max(io_mod.MAX_PIXELS, 10**9)  # measure past the limit too: the figures choose it
gc.collect()
def rss_kb():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
idle = rss_kb()  # current RSS after the imports
t0 = time.perf_counter()
if kind == "mask":
    arr = io_mod.load_mask(path, (side, side))
else:
    arr = io_mod.load_image(path, side)[0]
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
hwm = [int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM")][0]
print(json.dumps({"idle_mb": idle / 1024, "peak_mb": peak / 1024, "over_idle_mb": (peak - idle) / 1024,
                  "hwm_over_idle_mb": (hwm - idle) / 1024, "seconds": dt, "shape": list(arr.shape)}))
"""


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def make_cases(folder: Path, n: int, write: bool = True) -> dict[str, tuple[Path, str]]:
    """Write the test files (n × n) into ``folder`` (unless not ``write``); returns case → (path, "image" or
    "mask")."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, n, dtype=np.float32)
    makers: dict[str, Callable[[], Image.Image]] = {
        "rgb_flat": lambda: Image.new("RGB", (n, n), (120, 160, 200)),
        "rgb_noise": lambda: Image.fromarray(_noise(rng, (n, n, 3))),
        "rgba": lambda: Image.fromarray(
            np.dstack([_noise(rng, (n, n, 3)), np.broadcast_to(ramp.astype(np.uint8), (n, n))])
        ),
        "p_transparent": lambda: _palette(rng, n),
        "l": lambda: Image.fromarray(_noise(rng, (n, n))),
        "i16": lambda: Image.fromarray(
            (np.add.outer(ramp, ramp) * 128 + rng.integers(0, 256, (n, n))).astype(np.uint16)
        ),
    }
    out: dict[str, tuple[Path, str]] = {}
    for name, make in makers.items():
        path = folder / f"{name}.png"
        if write:
            make().save(path, format="PNG", compress_level=1)
        out[name] = (path, "image")
    jpeg = folder / "rgb.jpg"
    if write:
        planes = [np.broadcast_to(ramp.astype(np.uint8), (n, n))] * 2 + [_noise(rng, (n, n))]
        Image.fromarray(np.dstack(planes)).save(jpeg, format="JPEG", quality=90)
    out["jpeg"] = (jpeg, "image")
    out["mask_l"] = (folder / "l.png", "mask")
    return out


def _palette(rng: np.random.Generator, n: int) -> Image.Image:
    im = Image.fromarray(rng.integers(0, 256, (n, n), dtype=np.uint8), mode="L").convert("P")
    im.putpalette(list(rng.integers(0, 256, 768, dtype=np.uint8)))
    im.info["transparency"] = 0
    return im


def measure(path: Path, side: int, kind: str, io_file: str = "") -> dict:
    """One load in a fresh subprocess: RSS figures (MB), seconds and the result's shape."""
    cmd = [sys.executable, "-c", CHILD, str(ROOT), io_file, str(path), str(side), kind]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1] if done.stderr else f"exit {done.returncode}",
            "process_seconds": time.perf_counter() - t0,
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the cases; print a table (or JSON with ``--json``); exit 1 if an admitted size misses a target."""
    ap = parser("decode-memory", __doc__, json=False)
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[8000, 7071],
        help="sides of the square test images (px): 8000 (64 MP) and 7071 (the 50 MP limit)",
    )
    ap.add_argument("--sides", type=int, nargs="+", default=[32, 256], help="max_side values to load at")
    ap.add_argument("--cases", nargs="+", default=None, help="a subset of the cases (default: all)")
    ap.add_argument("--io", default="", help="load_image from this copy of dip_core/io.py (to compare versions)")
    ap.add_argument("--make", default="", help=argparse.SUPPRESS)  # internal: write the files into this folder
    args = ap.parse_args(argv)

    if args.make:
        make_cases(Path(args.make), args.sizes[0])
        return 0
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="decode-memory-") as tmp:
            make = [sys.executable, "-m", "benchmarks.decode_memory", "--make", tmp, "--sizes", str(size)]
            subprocess.run(make, check=True, cwd=ROOT)  # keeps this process small (see the module's docstring)
            cases = make_cases(Path(tmp), size, write=False)
            for name in args.cases or list(cases):
                path, kind = cases[name]
                for side in args.sides:
                    r = measure(path, side, kind, args.io)
                    r.update(case=name, size=size, max_side=side, file_mb=path.stat().st_size / 2**20)
                    r["meets_target"] = "error" not in r and r["over_idle_mb"] <= TARGET_MB and r["seconds"] <= TARGET_S
                    rows.append(r)
                    if not args.json:
                        print(_row(r), flush=True)
    from dip_core.io import MAX_PIXELS  # imported after the children ran, to keep this process small
    from dip_core.machine import cpu_model

    for r in rows:
        r["admitted"] = r["size"] ** 2 <= MAX_PIXELS  # sizes over the limit are refused by load_image in the app
    report = {
        "machine": cpu_model(),
        "max_pixels": MAX_PIXELS,
        "io": args.io or "dip_core/io.py",
        "target_mb": TARGET_MB,
        "target_s": TARGET_S,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        targets = f"targets ≤ {TARGET_MB:.0f} MB, ≤ {TARGET_S} s"
        print(f"machine: {report['machine']}; MAX_PIXELS {MAX_PIXELS:,}; {targets}")
    return 0 if all(r["meets_target"] for r in rows if r["admitted"]) else 1


def _row(r: dict) -> str:
    head = f"{r['case']:<14} {r['size']:>5}² {r['max_side']:>4}"
    if "error" in r:
        return f"{head}  error: {r['error']}"
    return (
        f"{head}  {r['over_idle_mb']:7.1f} MB over idle  {r['seconds']:6.2f} s  "
        f"file {r['file_mb']:6.1f} MB  -> {tuple(r['shape'])}"
    )


if __name__ == "__main__":
    sys.exit(main())
