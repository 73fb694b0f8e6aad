"""Does bf16 autocast keep the fp32 curve? The gate for making a reduced precision a default on a CPU.

    python -m benchmarks.precision [--size 256] [--steps 1000] [--width 128] [--lipschitz 1.4] [--json]

Denoising σ = 25 on House at size², the same seed, network and conv path (oneDNN direct, channels_last) in
fp32 and with bf16 autocast of the forward pass; PSNR measured every step. The figure is the mean absolute
difference of the two 25-step trailing moving averages of PSNR over the steps run (the speed issue's gate:
≤ 0.3 dB over the first 1000 steps), with each lane's peak and median step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from dip_core.curves import trailing_average
from dip_core.engine import preset, run

from .common import denoise_task, machine

GATE_DB = 0.3
WINDOW = 25


def lane(size: int, steps: int, width: int, lipschitz: float, precision: str) -> dict:
    """One run's per-step PSNR and step times."""
    cfg = preset("cpu", width=width, lr=1e-3, lipschitz=lipschitz, iterations=steps, every=steps, device="cpu",
                 conv_algo="direct", channels_last=True, precision=precision, measure_every_step=True)  # fmt: skip
    marks: list[float] = []
    snaps = list(run(denoise_task(size), cfg, cancel=lambda: bool(marks.append(time.perf_counter()))))
    psnrs = [v for s in snaps for _, v in s.step_psnrs]
    return {"psnr": psnrs, "median_step_ms": 1000 * statistics.median(np.diff(marks)) if len(marks) > 1 else None}


def compare(size: int = 256, steps: int = 1000, width: int = 128, lipschitz: float = 1.4) -> dict:
    """fp32 against bf16 on the same seed: the moving averages' mean |difference| and each lane's summary."""
    lanes = {p: lane(size, steps, width, lipschitz, p) for p in ("fp32", "bf16")}
    ma = {p: np.array([v for v in trailing_average(lanes[p]["psnr"], WINDOW) if v is not None]) for p in lanes}
    diff = float(np.mean(np.abs(ma["fp32"] - ma["bf16"])))
    info = machine(torch.device("cpu"))
    return {
        "size": size,
        "steps": steps,
        "width": width,
        "lipschitz": lipschitz,
        "mean_abs_diff_ma25_db": round(diff, 3),
        "max_abs_diff_ma25_db": round(float(np.max(np.abs(ma["fp32"] - ma["bf16"]))), 3),
        "gate_db": GATE_DB,
        "within_gate": diff <= GATE_DB,
        "lanes": {
            p: {
                "peak_ma25_db": round(float(ma[p].max()), 3),
                "peak_ma25_step": int(np.argmax(ma[p])) + WINDOW,
                "end_ma25_db": round(float(ma[p][-1]), 3),
                "median_step_ms": None if v["median_step_ms"] is None else round(v["median_step_ms"], 1),
            }
            for p, v in lanes.items()
        },
        "machine": info,
        "cpu_has_bf16": any(f in info["simd"] for f in ("avx512_bf16", "amx_bf16")),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--lipschitz", type=float, default=1.4)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    result = compare(args.size, args.steps, args.width, args.lipschitz)
    if args.json:
        print(json.dumps(result))
    else:
        lanes = result["lanes"]
        print(f"mean |MA25(fp32) − MA25(bf16)| over {args.steps} steps: {result['mean_abs_diff_ma25_db']} dB "
              f"(gate {GATE_DB}: {'within' if result['within_gate'] else 'NOT within'})")  # fmt: skip
        for name, lane_ in lanes.items():
            print(f"{name}: peak MA25 {lane_['peak_ma25_db']} dB at {lane_['peak_ma25_step']}, "
                  f"end {lane_['end_ma25_db']} dB, {lane_['median_step_ms']} ms/step")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
