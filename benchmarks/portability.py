"""Portability: the suite's outcome-sensitive tests under other CPU code paths, and how far their outcomes spread.

    python -m benchmarks.portability [tests] [--settings NAME ...] [--json PATH]
    python -m benchmarks.portability spread [--seeds N] [--settings NAME ...] [--out DIR]

A test marked ``outcome`` asserts where a chaotic optimisation ends (a PSNR reached, where a stop fires, a gap
to the best). Its trajectory changes with the kernels torch picks: ``ATEN_CPU_CAPABILITY`` (torch's own
vectorised kernels: default, avx2, avx512), ``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions) and the thread count
(reduction order). Each setting below runs in its own process, so the variables take effect at torch's import.

``tests`` runs ``pytest -m outcome`` under each setting and prints which tests pass. ``spread`` re-runs the
scenarios those tests assert on (same images and settings, through the engine) for several seeds under each
setting and writes the worst case of each asserted quantity beside the test's threshold (``CLAIMS``), to
``benchmarks/reports/portability/``: a margin counts only if it covers that measured spread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "reports" / "portability"

#: Name → (environment, torch threads). "native" is what torch picks on this CPU by itself.
SETTINGS: dict[str, tuple[dict[str, str], int]] = {
    "native-2t": ({}, 2),
    "native-1t": ({}, 1),
    "aten-default-2t": ({"ATEN_CPU_CAPABILITY": "default"}, 2),
    "aten-avx2-2t": ({"ATEN_CPU_CAPABILITY": "avx2"}, 2),
    "aten-avx512-1t": ({"ATEN_CPU_CAPABILITY": "avx512"}, 1),
    "onednn-avx2-2t": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "oldest-1t": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}, 1),
}

#: What each outcome test asserts, one fact, one place: the tests import their thresholds from here.
#: scenario → quantity → (comparison, threshold); a quantity of None (a stop that never fired) fails.
CLAIMS: dict[str, dict[str, tuple[str, float]]] = {
    # tests/test_engine.py::test_denoising_raises_psnr_well_above_the_observation
    "denoise_gain": {"gain_db": (">", 4.0)},
    # tests/test_engine.py::test_auto_stop_fires_and_reports_its_iteration
    "relative_stop": {"stop_iter": ("<", 600)},
    # tests/test_cli.py::test_discrepancy_auto_stop_ends_a_denoising_run_early
    "cli_discrepancy": {"stop_iter": ("<", 600), "gap_db": ("<=", 1.5)},
    # tests/test_stopping.py::test_a_real_denoising_run_stops_where_the_rule_says
    "engine_discrepancy": {"stop_iter": ("<", 1500), "gap_db": ("<=", 1.5), "overfit_db": (">", 1.5)},
    # tests/test_app_logic.py::test_noise_level_auto_stop_ends_a_denoising_run_near_its_best and
    # tests/test_app_client.py::test_noise_level_auto_stop_through_the_api (the same run)
    # (a 32 px image and a width-8 network: its PSNR curve is noisy, so the gap to the best spreads wider)
    "app_discrepancy": {"stop_iter": ("<", 1500), "gap_db": ("<=", 3.0)},
    # tests/test_app_browser.py::test_noise_level_auto_stop_in_the_browser
    "browser_discrepancy": {"stop_iter": ("<", 5000)},
}
#: Settings the spread measures (aten-avx2 and aten-avx512 gave the same curves as native on an AVX-512 CPU, whose
#: native kernels are the AVX-512 ones; the tests command runs them all).
SPREAD_SETTINGS = ["native-2t", "native-1t", "aten-default-2t", "onednn-avx2-2t", "oldest-1t"]


def threshold(scenario: str, quantity: str) -> float:
    """The threshold a test asserts for ``quantity`` of ``scenario``."""
    return CLAIMS[scenario][quantity][1]


def holds(op: str, value: float | None, limit: float) -> bool:
    """Whether ``value op limit`` (None never holds)."""
    if value is None or not math.isfinite(value):
        return False
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


# ---------------------------------------------------------------------------------------------- scenarios


def _house(side: int, crop: int | None = None, png: bool = True):
    """House resized to ``side`` (as the tests' fixtures), optionally cropped, 8-bit quantised as a saved PNG is."""
    import numpy as np

    from dip_core.io import load_image, resize_max_side

    img = resize_max_side(load_image(ROOT / "assets" / "house256.png")[0], side)[0]
    if crop:
        img = img[:crop, :crop]
    return np.round(np.clip(img, 0, 1) * 255).astype(np.float32) / 255 if png else img


def _small(**kw):
    """tests/helpers.py's ``small()`` configuration."""
    from dip_core.engine import RunConfig

    base = dict(width=16, depth=3, iterations=30, every=10, lr=0.01, padding="zeros", sn_method="power", device="cpu")
    return RunConfig(**{**base, **kw}).validate()


def denoise_gain(seed: int) -> dict:
    from dip_core import make_task, run_to_end
    from dip_core.metrics import psnr
    from dip_core.tasks import to_image

    clean = _house(64, png=False)
    task = make_task("denoise", clean, 25, seed=seed)
    snaps = run_to_end(task, _small(width=32, depth=4, iterations=300, every=25, lr=0.01, seed=seed))
    return {"gain_db": max(s.psnr for s in snaps) - psnr(to_image(task.observation), clean)}


def relative_stop(seed: int) -> dict:
    from dip_core import make_task, run_to_end

    task = make_task("denoise", _house(64, png=False), 25, seed=seed)
    last = run_to_end(task, _small(iterations=600, every=50, auto_stop="relative", seed=seed))[-1]
    return {"stop_iter": last.stop_iter}


def over_paths(measure_one: Callable[[dict], dict]) -> dict:
    """A preset-based scenario under each convolution path ``conv_algo="auto"`` can pick (another CPU picks
    another one): path name → its quantities."""
    from dip_core.autotune import CANDIDATES

    return {"paths": {name: measure_one(settings) for name, settings in CANDIDATES.items()}}


def cli_discrepancy(seed: int) -> dict:
    from dip_core import make_task, preset, run_to_end

    task = make_task("denoise", _house(64), 25, seed=seed)

    def one(path: dict) -> dict:
        cfg = preset("cpu", lipschitz=0.0, width=16, lr=0.01, iterations=600, every=25, auto_stop="discrepancy",
                     seed=seed, device="cpu", **path)  # fmt: skip
        snaps = run_to_end(task, cfg)
        return {"stop_iter": snaps[-1].stop_iter, "gap_db": max(s.psnr for s in snaps) - snaps[-1].psnr}

    return over_paths(one)


def engine_discrepancy(seed: int) -> dict:
    from dip_core import make_task, run_to_end

    task = make_task("denoise", _house(64, png=False), 25, seed=seed)
    last = run_to_end(task, _small(iterations=1500, every=25, auto_stop="discrepancy", seed=seed))[-1]
    going = run_to_end(task, _small(iterations=600, every=25, seed=seed))
    return {
        "stop_iter": last.stop_iter,
        "gap_db": max(s.psnr for s in going) - last.psnr,
        "overfit_db": last.psnr - going[-1].psnr,
    }


def _app_run(image, seed: int, iterations: int, **kw) -> dict:
    """One run through the app's request parser (the /run endpoint's settings), as the app tests make it."""
    from demo.inputs import parse_request
    from dip_core import run_to_end

    req = parse_request(image, iterations=iterations, auto_stop="discrepancy", compare=False, seed=seed, **kw)

    def one(path: dict) -> dict:
        last = run_to_end(req.task, replace(req.configs["controlled"], **path))[-1]
        return {"stop_iter": last.stop_iter, "gap_db": last.best_psnr - last.psnr}

    return over_paths(one)


#: The app scenarios' λ: the one their spread was measured with (the app's CPU default became λ = 1 later, so the
#: tests set this one explicitly)
APP_LAMBDA = 1.4


def app_discrepancy(seed: int) -> dict:
    return _app_run(_house(64, crop=32), seed, 1500, max_side=32, width=8, lr=0.01, lipschitz=APP_LAMBDA)


def browser_discrepancy(seed: int) -> dict:
    # the browser test runs after the upload test: its 48×48 upload, width 8, the app's default lr
    return _app_run(_house(64, crop=48), seed, 5000, width=8, lipschitz=APP_LAMBDA)


SCENARIOS: dict[str, Callable[[int], dict]] = {
    f.__name__: f
    for f in (denoise_gain, relative_stop, cli_discrepancy, engine_discrepancy, app_discrepancy, browser_discrepancy)
}
assert set(SCENARIOS) == set(CLAIMS)


# ---------------------------------------------------------------------------------------------- drivers


def environment(setting: str) -> dict[str, str]:
    """This process's environment with ``setting``'s variables and thread count."""
    env, threads = SETTINGS[setting]
    out = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    out.update(env, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    return out


def run_tests(settings: list[str], extra: list[str]) -> dict[str, dict[str, str]]:
    """``pytest -m outcome`` under each setting: setting → test id → passed / failed / error / skipped."""
    table: dict[str, dict[str, str]] = {}
    for name in settings:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "-m", "outcome", "-q", "-rA", "-p", "no:cacheprovider", *extra]
        res = subprocess.run(cmd, cwd=ROOT, env=environment(name), capture_output=True, text=True)
        outcomes = {}
        for line in res.stdout.splitlines():
            m = re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", line)
            if m:
                outcomes[m.group(2).split(" ")[0]] = m.group(1).lower()
        if not outcomes:
            outcomes["(no test ran)"] = f"pytest exit {res.returncode}"
        table[name] = outcomes
        print(f"{name}: {sum(v == 'passed' for v in outcomes.values())}/{len(outcomes)} passed "
              f"in {time.perf_counter() - start:.0f} s", file=sys.stderr)  # fmt: skip
    return table


def tests_markdown(table: dict[str, dict[str, str]]) -> str:
    """The pass/fail table: one row per test, one column per setting."""
    tests = sorted({t for row in table.values() for t in row})
    head = "| test | " + " | ".join(table) + " |\n|---|" + "---|" * len(table) + "\n"
    mark = {"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**"}
    rows = [
        f"| `{t}` | " + " | ".join(mark.get(table[s].get(t, "—"), table[s].get(t, "—")) for s in table) + " |"
        for t in tests
    ]
    return head + "\n".join(rows) + "\n"


def measure(seeds: list[int]) -> list[dict]:
    """Every scenario for every seed, in this process (its environment is the setting)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    rows = []
    for name, fn in SCENARIOS.items():
        for seed in seeds:
            start = time.perf_counter()
            rows.append({"scenario": name, "seed": seed, **fn(seed), "seconds": round(time.perf_counter() - start, 2)})
    return rows


def spread(settings: list[str], seeds: list[int]) -> list[dict]:
    """Rows of ``measure`` under each setting (each a child process), tagged with the setting and its kernels."""
    rows = []
    for name in settings:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "benchmarks.portability", "_measure", "--seeds", *map(str, seeds)]
        res = subprocess.run(cmd, cwd=ROOT, env=environment(name), capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{name}: measurement failed:\n{res.stderr[-2000:]}")
        got = json.loads(res.stdout.strip().splitlines()[-1])
        rows += [{"setting": name, "capability": got["capability"], **r} for r in got["rows"]]
        print(f"{name} ({got['capability']}): {len(got['rows'])} runs in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)  # fmt: skip
    return rows


def worst_cases(rows: list[dict]) -> list[dict]:
    """Per scenario and quantity: the threshold, the worst value over all rows, and whether every row holds."""
    out = []
    for scenario, claims in CLAIMS.items():
        mine = [r for r in rows if r["scenario"] == scenario]
        mine = [p for r in mine for p in (r["paths"].values() if "paths" in r else [r])]  # each path is a run
        for quantity, (op, limit) in claims.items():
            values = [r[quantity] for r in mine]
            finite = [v for v in values if v is not None]
            worst = None if len(finite) < len(values) else (max if op in ("<", "<=") else min)(finite, default=None)
            out.append(dict(scenario=scenario, quantity=quantity, op=op, threshold=limit, runs=len(values),
                            worst=worst, best=(min if op in ("<", "<=") else max)(finite, default=None),
                            failures=sum(not holds(op, v, limit) for v in values)))  # fmt: skip
    return out


def spread_markdown(rows: list[dict], cases: list[dict], seeds: list[int], settings: list[str]) -> str:
    import torch

    from .common import machine

    m = machine(torch.device("cpu"))
    lines = [
        "# Spread of the outcome tests' quantities",
        "",
        f"`python -m benchmarks.portability spread --seeds {len(seeds)}` on {m.get('cpu', '?')}, "
        f"torch {m.get('torch', '?')}: seeds {seeds[0]}-{seeds[-1]} × settings {', '.join(settings)}.",
        "Each test asserts the threshold below for seed 0 under whatever kernels the CI machine has; the worst",
        "value over every seed and setting must hold too, so that another CPU (another trajectory) passes.",
        "Scenarios on the `cpu` preset run once per convolution path `conv_algo=\"auto\"` can choose (each a run).",
        "",
        "| scenario | quantity | test asserts | runs | best | worst | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        fmt = (lambda v: "never" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
        lines.append(f"| {c['scenario']} | {c['quantity']} | {c['op']} {c['threshold']:g} | {c['runs']} | "
                     f"{fmt(c['best'])} | {fmt(c['worst'])} | {c['failures']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.portability", description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="tests", choices=("tests", "spread", "_measure"))
    p.add_argument("--settings", nargs="+", default=None, choices=list(SETTINGS),
                   help="default: every setting for tests, SPREAD_SETTINGS for spread")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="spread: how many seeds (one number), or which")
    p.add_argument("--json", help="tests: also write the table as JSON here")
    p.add_argument("--out", default=str(REPORT), help="spread: folder for spread.json and spread.md")
    p.add_argument("--report-only", action="store_true", help="spread: rewrite spread.md from spread.json")
    args, extra = p.parse_known_args(argv)  # tests: anything else goes to pytest (e.g. -x, -k NAME)
    if args.command == "_measure":
        import torch

        rows = measure(args.seeds or [0])
        print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}))
        return 0
    if args.command == "spread":
        out = Path(args.out)
        if args.report_only:  # the thresholds changed, the measurement did not
            saved = json.loads((out / "spread.json").read_text())
            seeds, args.settings, rows = saved["seeds"], saved["settings"], saved["rows"]
        else:
            seeds = args.seeds or [5]
            seeds = list(range(seeds[0])) if len(seeds) == 1 else seeds
            args.settings = args.settings or SPREAD_SETTINGS
            rows = spread(args.settings, seeds)
        cases = worst_cases(rows)
        out.mkdir(parents=True, exist_ok=True)
        (out / "spread.json").write_text(json.dumps({"seeds": seeds, "settings": args.settings, "rows": rows,
                                                     "worst": cases}, indent=1) + "\n")  # fmt: skip
        text = spread_markdown(rows, cases, seeds, args.settings)
        (out / "spread.md").write_text(text)
        print(text)
        return 1 if any(c["failures"] for c in cases) else 0
    table = run_tests(args.settings or list(SETTINGS), extra)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    print(tests_markdown(table))
    return 0 if all(v in ("passed", "skipped") for row in table.values() for v in row.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
