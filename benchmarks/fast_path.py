"""Faithfulness of a fast compare path: its PSNR curves against the fp32 eager separate runs, same seeds.

    python -m benchmarks.fast_path [--device cuda] [--size 256] [--width 128] [--steps 2000]
                                   [--variants stacked stacked+bf16 stacked+channels_last] [--json]

The reference is the two networks (vanilla, λ) run one after the other, fp32, eager (``separate+eager`` of
``benchmarks.pair_step``); each variant runs the same pair with the same seeds. Single iterates of two numeric
paths drift apart chaotically, so the curves compared are 25-step moving averages of per-step PSNR; a variant
passes when, for both networks, their mean absolute difference is at most ``--tol`` dB (0.3). Exit status 1
when any variant misses: a fast path that misses stays off by default (demo/settings.py, ``stacked``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch

from dip_core.engine import run
from dip_core.stacked import run_stacked

from .common import denoise_task, machine, pick_device
from .device_curves import compare
from .pair_step import MODIFIERS, pair_configs


def curves(variant: str, device: torch.device, size: int, width: int, lipschitz: float, steps: int) -> list[list]:
    """Per-step PSNR of both networks under ``variant`` (``separate`` or ``stacked``, with modifiers)."""
    kind, *mods = variant.split("+")
    overrides = {k: v for m in mods for k, v in MODIFIERS[m].items()}
    configs = [replace(c, measure_every_step=True) for c in pair_configs(device, width, lipschitz, steps, 50, overrides)]
    out: list[list] = [[], []]
    task = denoise_task(size)
    if kind == "stacked":
        for snaps in run_stacked(task, configs):
            for i, s in enumerate(snaps):
                if s is not None:
                    out[i] += [p for _, p in s.step_psnrs]
    else:
        for i, c in enumerate(configs):
            out[i] = [p for s in run(task, c) for _, p in s.step_psnrs]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fast_path", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--lipschitz", type=float, default=1.4)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--variants", nargs="+", default=["stacked", "stacked+bf16", "stacked+channels_last"])
    p.add_argument("--tol", type=float, default=0.3, help="bound on the mean |ΔMA25| of each network (dB)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    shape = (device, args.size, args.width, args.lipschitz, args.steps)
    reference = curves("separate+eager", *shape)
    result = {"size": args.size, "width": args.width, "lipschitz": args.lipschitz, "steps": args.steps,
              "reference": "separate+eager (fp32)", "tol_db": args.tol, "variants": {}}  # fmt: skip
    for variant in args.variants:
        got = curves(variant, *shape)
        nets = {name: compare(ref, new) for name, ref, new in zip(("vanilla", "controlled"), reference, got)}
        ok = all(n["mean_abs_gap_db"] <= args.tol for n in nets.values())
        result["variants"][variant] = {**nets, "ok": ok}
    result["ok"] = all(v["ok"] for v in result["variants"].values())
    result["machine"] = machine(device)
    print(json.dumps(result) if args.json else json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
