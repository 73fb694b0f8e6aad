"""Same curves on two devices: one denoising run on CPU (reference numerics) and on CUDA (its preset).

    python -m benchmarks.device_curves [--size 128] [--steps 400] [--json]

The CPU run uses the authors' numerics (reflection padding, exact SVD, fp32, direct convolution); the
CUDA run uses the ``cuda`` preset's (power iteration, CUDA graph, ...). Same network (128 ch), λ, lr, seed
and noise. Single iterates diverge chaotically between any two numeric paths, so the check compares the
25-step moving averages of the per-step PSNR: their mean absolute gap and the gap between their peaks.
Exit status 1 when a gap exceeds its tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch

from dip_core.curves import trailing_average
from dip_core.engine import preset, run_to_end

from .common import denoise_task, machine


def curve(device: str, size: int, steps: int, lipschitz: float, numerics: str) -> list[float]:
    """Per-step PSNR of a denoising run (every step measured on the device)."""
    cfg = preset(numerics, device=device, width=128, lr=1e-3, lipschitz=lipschitz, iterations=steps, every=50)
    cfg = replace(cfg, measure_every_step=True).validate()
    snaps = run_to_end(denoise_task(size), cfg)
    return [p for s in snaps for _, p in s.step_psnrs]


def compare(a: list[float], b: list[float], window: int = 25) -> dict:
    ma, mb = trailing_average(a, window), trailing_average(b, window)
    pairs = [(x, y) for x, y in zip(ma, mb) if x is not None and y is not None]
    gaps = [abs(x - y) for x, y in pairs]
    return {
        "mean_abs_gap_db": round(sum(gaps) / len(gaps), 3),
        "max_abs_gap_db": round(max(gaps), 3),
        "peak_ma_a": round(max(x for x, _ in pairs), 3),
        "peak_ma_b": round(max(y for _, y in pairs), 3),
        "peak_gap_db": round(abs(max(x for x, _ in pairs) - max(y for _, y in pairs)), 3),
        "final_ma_a": round(pairs[-1][0], 3),
        "final_ma_b": round(pairs[-1][1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_curves", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lipschitz", type=float, default=1.4)
    p.add_argument("--device", default="cuda", help="the device under test (against CPU reference numerics)")
    p.add_argument("--numerics", default="cuda", help="preset whose numerics the device under test uses")
    p.add_argument("--mean-tol", type=float, default=0.5, help="tolerance on the mean |ΔMA25| (dB)")
    p.add_argument("--peak-tol", type=float, default=0.3, help="tolerance on the gap between MA25 peaks (dB)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    cpu = curve("cpu", args.size, args.steps, args.lipschitz, "paper")
    dut = curve(args.device, args.size, args.steps, args.lipschitz, args.numerics)
    result = {"size": args.size, "steps": args.steps, "lipschitz": args.lipschitz, "device": args.device}
    result.update(compare(cpu, dut))
    result["ok"] = result["mean_abs_gap_db"] <= args.mean_tol and result["peak_gap_db"] <= args.peak_tol
    result["tolerance"] = {"mean_abs_gap_db": args.mean_tol, "peak_gap_db": args.peak_tol}
    result["machine"] = machine(torch.device(args.device))
    result["curves"] = {"cpu_reference": [round(v, 3) for v in cpu], args.device: [round(v, 3) for v in dut]}
    if args.json:
        print(json.dumps(result))
    else:
        print({k: v for k, v in result.items() if k != "curves"})
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
