"""CUDA graph check: the captured-graph step gives the eager step's curve, and how much faster it is.

    python -m benchmarks.graph_check [--size 256] [--steps 400] [--lipschitz 1.4] [--json]

Runs the ``cuda`` preset twice on the same denoising task and seed, eager and with ``cuda_graph``, every step
measured, and compares the 25-step moving averages of PSNR (single iterates of two numeric paths drift
apart chaotically). Step time is wall time over the steps after the capture, synced at the end.
Exit status 1 when the curves disagree beyond tolerance or the capture fell back to eager.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import torch

from dip_core.engine import graph_start, preset, run

from .common import denoise_task, machine
from .device_curves import compare


def timed_curve(size: int, steps: int, lipschitz: float, graph: bool) -> tuple[list[float], float, list[str]]:
    """Per-step PSNR of one run, ms per step after the graph's capture step, and the warnings it raised."""
    cfg = preset("cuda", device="cuda", lipschitz=lipschitz, iterations=steps, every=50, cuda_graph=graph)
    cfg = replace(cfg, measure_every_step=True).validate()
    start = graph_start(replace(cfg, cuda_graph=True)) or 0
    psnr: list[float] = []
    t_from = None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for snap in run(denoise_task(size), cfg):
            psnr += [p for _, p in snap.step_psnrs]
            if t_from is None and snap.iter > start + 10:
                torch.cuda.synchronize()
                t_from, n_from = time.perf_counter(), snap.iter
        torch.cuda.synchronize()
    ms = 1000 * (time.perf_counter() - t_from) / max(1, steps - n_from) if t_from else float("nan")
    return psnr, ms, [str(w.message) for w in caught]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.graph_check", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lipschitz", type=float, default=1.4)
    p.add_argument("--mean-tol", type=float, default=0.3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA GPU is available", file=sys.stderr)
        return 2
    eager, eager_ms, _ = timed_curve(args.size, args.steps, args.lipschitz, False)
    graph, graph_ms, warned = timed_curve(args.size, args.steps, args.lipschitz, True)
    result = {"size": args.size, "steps": args.steps, "lipschitz": args.lipschitz}
    result.update(compare(eager, graph))
    fell_back = any("capture" in w.lower() for w in warned)
    result.update(
        eager_ms_per_step=round(eager_ms, 3),
        graph_ms_per_step=round(graph_ms, 3),
        graph_speedup=round(eager_ms / graph_ms, 2),
        warnings=warned[:5],
        fell_back=fell_back,
        machine=machine(torch.device("cuda")),
    )
    result["ok"] = result["mean_abs_gap_db"] <= args.mean_tol and not fell_back
    print(json.dumps(result) if args.json else {k: v for k, v in result.items() if k != "machine"})
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
