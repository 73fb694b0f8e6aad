"""One network's CPU training step eager against ``torch.compile`` (issue 26: keep compile only where it is faster).

    python -m benchmarks compile-check --size 128 --width 24 --modes eager compile eager-nchw compile-nchw

The app's CPU network on House (denoising σ 25, λ 1, the ``cpu`` preset's numerics, direct convolutions, one torch
thread unless ``--threads``), each mode in a process of its own (compiled code and caches do not leak between
modes): ``warmup`` eager steps first (past the power iteration's 100-step warm-up), then, for the compiled modes,
``torch.compile`` of the decoder with the layers' step counters as dynamic ints (no recompile per step) and 10 steps
that pay the compilation; then ``rounds`` × ``steps`` timed steps. ``-nchw``: without channels_last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from .options import parser, set_threads

MODES = ("eager", "compile", "eager-nchw", "compile-nchw")


def one(mode: str, size: int, width: int, steps: int, rounds: int, warmup: int) -> dict:
    """Time ``mode`` in this process: ms per step of each round, the compile's seconds, the graphs compiled."""
    from dataclasses import replace

    import torch

    from dip_core import make_task, preset, resolve
    from dip_core.engine import Stepper, build
    from dip_core.io import load_image

    from .common import HOUSE

    img, _ = load_image(str(HOUSE), max_side=size)
    task = make_task("denoise", img, 25, seed=0)
    base = preset("cpu", width=width, lr=0.007, iterations=100_000, seed=0)
    config = resolve(
        task,
        replace(base, lipschitz=1.0, device="cpu", conv_algo="direct", channels_last=not mode.endswith("-nchw")),
    )
    state = build(task, config)
    step = Stepper(state, config, task)
    steps_done = 0

    def run(n: int) -> None:
        nonlocal steps_done
        for t in range(steps_done + 1, steps_done + n + 1):
            step(t, False)
        steps_done += n

    run(warmup)
    compile_s, graphs = None, None
    if mode.startswith("compile"):
        import torch._dynamo

        torch._dynamo.config.allow_unspec_int_on_nn_module = True  # the power iteration's counters stay dynamic
        state.net = torch.compile(state.net)
        start = time.perf_counter()
        run(10)
        compile_s = round(time.perf_counter() - start, 1)
        graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    ms = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(steps)
        ms.append(round(1000 * (time.perf_counter() - start) / steps, 2))
    return dict(mode=mode, ms_per_step=ms, median_ms=statistics.median(ms), compile_s=compile_s, graphs=graphs)


def main(argv: list[str] | None = None) -> int:
    p = parser("compile-check", __doc__, size=128, width=24, steps=200, threads=1, json=False)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # a child process's one mode
    args = p.parse_args(argv)
    if args.one:  # a child process: one mode, its row as JSON
        set_threads(args.threads)
        print(json.dumps(one(args.one, args.size, args.width, args.steps, args.rounds, args.warmup)))
        return 0
    rows = []
    for mode in args.modes:
        cmd = [sys.executable, "-m", "benchmarks", "compile-check", "--one", mode]
        for flag in ("size", "width", "steps", "threads", "rounds", "warmup"):
            cmd += [f"--{flag}", str(getattr(args, flag))]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"error: {mode} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(dict(size=args.size, width=args.width, threads=args.threads, rows=rows)))
        return 0
    print(f"House {args.size} px, width {args.width}, {args.threads} thread(s): ms per step, {args.rounds} rounds")
    for r in rows:
        extra = f" (compile {r['compile_s']} s, {r['graphs']} graphs)" if r["compile_s"] is not None else ""
        print(f"  {r['mode']:14s} {r['median_ms']:7.2f}  {r['ms_per_step']}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
