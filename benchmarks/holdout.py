"""Inpainting (half the pixels kept) fitted on every known pixel, and on all but a held-out ``--fraction`` whose error
is measured beside the PSNR (issue 35, item 1), at reports/auto_lambda's CPU scale (the cpu preset at width 24,
lr 0.007, at most 128 px, 2000 steps, bilinear, direct conv in channels_last, one thread; fraction 0: its script's run
at 4a28f9b). Rows go to ``--out`` (one there is not run again); the table, smoothed over 5 snapshots, comes last."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dip_core import make_task, preset, resolve
from dip_core.engine import Stepper, build
from dip_core.io import load_image
from dip_core.lesson import smoothed_psnr
from dip_core.metrics import psnr_t
from dip_core.tasks.inpaint import hold_out, known_mse

from .common import ROOT, fmt, md_table
from .options import parser

AT = (250, 500, 1000, 1500)  # steps the table shows the PSNR at


def fit(image: str, lam: float, fraction: float, args: argparse.Namespace) -> dict:
    """One run's PSNR and (held out) the held-out pixels' PSNR, −10 log10 of their MSE, every 10 steps."""
    task = make_task("inpaint", load_image(ROOT / "assets" / image, max_side=args.size)[0], 0.5, seed=args.seed)
    fitted, held = hold_out(task, fraction, args.seed) if fraction else (task, None)
    base = preset("cpu", width=args.width, lr=args.lr, iterations=args.steps, every=10, seed=args.seed, device="cpu")
    base = replace(base, lipschitz=lam, upsample="bilinear", gaussian_sigma=None, conv_algo="direct")
    config = resolve(fitted, replace(base, channels_last=True))
    step, row = Stepper(build(fitted, config), config, fitted), dict(image=image, lam=lam, fraction=fraction)
    row |= dict(seed=args.seed, iter=list(range(10, args.steps + 1, 10)), psnr=[], held_psnr=[])
    for t in range(1, args.steps + 1):
        out, _ = step(t, t == args.steps)
        if t % 10 == 0:
            row["psnr"].append(round(float(psnr_t(task.finish(out), task.clean)), 4))
            if held is not None:
                row["held_psnr"].append(round(-10 * math.log10(float(known_mse(held, out))), 4))
    return row


def summary(row: dict) -> list:
    """Peak, its step, end, the PSNR at ``AT``; the step where the held-out pixels' PSNR peaks and the PSNR there."""
    s, it = smoothed_psnr(row), row["iter"]
    held = int(np.argmax(smoothed_psnr({"psnr": row["held_psnr"]}))) if row["held_psnr"] else None
    at = [fmt(float(s[it.index(t)])) if t in it else "—" for t in AT]
    return [fmt(float(s.max())), it[int(s.argmax())], fmt(float(s[-1])), *at] + (
        [it[held], fmt(float(s[held]))] if held is not None else ["—", "—"]
    )


def main(argv: list[str] | None = None) -> int:
    p = parser("holdout", __doc__, size=128, steps=2000, width=24, lr=0.007, seed=0)
    p.add_argument("--images", nargs="+", default=["astronaut.png", "chelsea.png", "coffee.png"], help="in assets/")
    p.add_argument("--lams", nargs="+", type=float, default=[0.0, 1.4], help="fixed λ (0: vanilla)")
    p.add_argument("--fraction", type=float, default=0.1, help="share of the known pixels held out of the loss")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "auto_lambda" / "holdout.jsonl")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    for key in [(i, lam, f, args.seed) for i in args.images for lam in args.lams for f in (0.0, args.fraction)]:
        if key not in [(r["image"], r["lam"], r["fraction"], r["seed"]) for r in rows]:
            rows.append(fit(*key[:3], args))
            with open(args.out, "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    heads = ["image", "seed", "λ", "held out", "peak", "at", "end", *(f"@{t}" for t in AT), "held peak at", "there"]
    table = [[r["image"], r["seed"], r["lam"], r["fraction"], *summary(r)] for r in rows]
    print("\n".join(md_table(heads, table)))
    return 0
