"""Portability: the suite's outcome-sensitive tests under other CPU code paths, and how far their outcomes spread.

    python -m benchmarks portability [tests] [--settings NAME ...] [--json]
    python -m benchmarks portability spread [--seeds N] [--settings NAME ...] [--out DIR]

A test marked ``outcome`` asserts where a chaotic optimisation ends (a PSNR reached, where a stop fires, a gap
to the best). Its trajectory changes with the kernels torch picks: ``ATEN_CPU_CAPABILITY`` (torch's own
vectorised kernels: default, avx2, avx512), ``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions) and the thread count
(reduction order). Each setting below runs in its own process, so the variables take effect at torch's import.

``tests`` runs ``pytest -m outcome`` under each setting and prints which tests pass. ``spread`` re-runs the
scenarios those tests assert on (same images and settings, through the engine) for several seeds under each
setting and writes the worst case of each asserted quantity beside the test's threshold to
``reports/portability/``: a margin counts only if it covers that measured spread. The thresholds and
the scenarios live with the tests, in ``tests/outcomes.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from .common import ROOT, fmt, machine, md_table
from .options import parser

REPORT = ROOT / "reports" / "portability"
sys.path.insert(0, str(ROOT / "tests"))  # the outcome tests' thresholds and scenarios: tests/outcomes.py
from outcomes import CLAIMS, SCENARIOS, holds  # noqa: E402

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

#: Settings the spread measures (aten-avx2 and aten-avx512 gave the same curves as native on an AVX-512 CPU, whose
#: native kernels are the AVX-512 ones; the tests command runs them all).
SPREAD_SETTINGS = ["native-2t", "native-1t", "aten-default-2t", "onednn-avx2-2t", "oldest-1t"]


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
        print(
            f"{name}: {sum(v == 'passed' for v in outcomes.values())}/{len(outcomes)} passed "
            f"in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    return table


def tests_markdown(table: dict[str, dict[str, str]]) -> str:
    """The pass/fail table: one row per test, one column per setting."""
    mark = {"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**"}
    tests = sorted({t for row in table.values() for t in row})
    rows = [[f"`{t}`", *(mark.get(table[s].get(t, "—"), table[s].get(t, "—")) for s in table)] for t in tests]
    return "\n".join(md_table(["test", *table], rows)) + "\n"


def measure(seeds: list[int]) -> list[dict]:
    """Every scenario for every seed, in this process (its environment is the setting)."""
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
        cmd = [sys.executable, "-m", "benchmarks", "portability", "_measure", "--seeds", *map(str, seeds)]
        res = subprocess.run(cmd, cwd=ROOT, env=environment(name), capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{name}: measurement failed:\n{res.stderr[-2000:]}")
        got = json.loads(res.stdout.strip().splitlines()[-1])
        rows += [{"setting": name, "capability": got["capability"], **r} for r in got["rows"]]
        print(
            f"{name} ({got['capability']}): {len(got['rows'])} runs in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
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
            worse, better = (max, min) if op in ("<", "<=") else (min, max)
            worst = None if len(finite) < len(values) else worse(finite, default=None)
            case = dict(scenario=scenario, quantity=quantity, op=op, threshold=limit, runs=len(values), worst=worst)
            out.append(
                case | dict(best=better(finite, default=None), failures=sum(not holds(op, v, limit) for v in values))
            )
    return out


def spread_markdown(rows: list[dict], cases: list[dict], seeds: list[int], settings: list[str]) -> str:
    m = machine(torch.device("cpu"))
    lines = [
        "# Spread of the outcome tests' quantities",
        "",
        f"`python -m benchmarks portability spread --seeds {len(seeds)}` on {m.get('cpu', '?')}, "
        f"torch {m.get('torch', '?')}: seeds {seeds[0]}-{seeds[-1]} × settings {', '.join(settings)}.",
        "Each test asserts the threshold below for seed 0 under whatever kernels the CI machine has; the worst",
        "value over every seed and setting must hold too, so that another CPU (another trajectory) passes.",
        'Scenarios on the `cpu` preset run once per convolution path `conv_algo="auto"` can choose (each a run).',
        "",
    ]
    heads = ["scenario", "quantity", "test asserts", "runs", "best", "worst", "failures"]
    rows = [[c["scenario"], c["quantity"], f"{c['op']} {c['threshold']:g}", c["runs"]] for c in cases]
    for row, c in zip(rows, cases):
        row += ["never" if c[k] is None else fmt(c[k]) for k in ("best", "worst")] + [c["failures"]]
    return "\n".join(lines + md_table(heads, rows)) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = parser("portability", __doc__, json=False)
    p.add_argument("command", nargs="?", default="tests", choices=("tests", "spread", "_measure"))
    settings_help = "default: every setting for tests, SPREAD_SETTINGS for spread"
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), help=settings_help)
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="spread: how many seeds (one number), or which")
    p.add_argument("--out", default=str(REPORT), help="spread: folder for spread.json and spread.md")
    p.add_argument("--report-only", action="store_true", help="spread: rewrite spread.md from spread.json")
    args, extra = p.parse_known_args(argv)  # tests: anything else goes to pytest (e.g. -x, -k NAME)
    if args.command == "_measure":
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
        (out / "spread.json").write_text(
            json.dumps({"seeds": seeds, "settings": args.settings, "rows": rows, "worst": cases}, indent=1) + "\n"
        )
        text = spread_markdown(rows, cases, seeds, args.settings)
        (out / "spread.md").write_text(text)
        print(text)
        return 1 if any(c["failures"] for c in cases) else 0
    table = run_tests(args.settings or list(SETTINGS), extra)
    print(json.dumps(table, indent=1) if args.json else tests_markdown(table))
    return 0 if all(v in ("passed", "skipped") for row in table.values() for v in row.values()) else 1
