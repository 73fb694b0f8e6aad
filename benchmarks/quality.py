"""How good is DIP against classical restoration: CBM3D, the OpenCV baseline and DIP on the same observations.

``python -m benchmarks quality --images DIR --task denoise --level 25 --out DIR [--max-side 128] [--preset cpu]``
degrades each image as the engine does (seeded noise, the engine's JPEG, Bernoulli or given masks, Lanczos-2
downsampling), then scores on it: CBM3D (denoising only; the ``bm3d`` package, ``pip install -r
requirements-bench.txt``), the task's OpenCV baseline (``dip_core.baselines``), vanilla DIP at its best logged
iteration (an oracle: it needs the clean image), and the controlled network (``--lipschitz``, default: the
paper's λ for the task) at its automatic stop and at the end of its budget. Rows go to ``DIR/results.jsonl`` as
images finish (a rerun skips the images already there); the table (PSNR, SSIM and seconds per image, and the
mean) to ``DIR/report.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dip_core import TASKS, Task, baseline, make_task, preset, resolve_device, run, to_image
from dip_core.io import load_image, resize_mask, resize_max_side
from dip_core.machine import cpu
from dip_core.metrics import psnr, ssim
from dip_core.stopping import task_noise_energy
from dip_core.summary import stop_iters
from dip_core.sweep import image_files

from .common import fmt, md_table
from .options import parser


def stop_rule(task: Task) -> str:
    """The automatic stop for the controlled network: the noise-level rule where σ is known (denoising), else
    the relative ratio rule (ours, for short budgets)."""
    return "discrepancy" if task.noise_sigma is not None else "relative"


def cbm3d(task: Task) -> dict | None:
    """CBM3D (grey: BM3D) at the task's known σ; None where it does not apply or bm3d is not installed."""
    if task.noise_sigma is None:
        return None
    try:
        import bm3d
    except ImportError:
        return {"unavailable": "bm3d is not installed (pip install -r requirements-bench.txt)"}
    y = to_image(task.observation).astype(np.float64)
    start = time.perf_counter()
    sigma = task.noise_sigma
    out = bm3d.bm3d_rgb(y, sigma) if y.shape[2] == 3 else bm3d.bm3d(y[:, :, 0], sigma)[:, :, None]
    seconds = time.perf_counter() - start
    out = np.clip(out, 0, 1).astype(np.float32)
    clean = to_image(task.clean)
    return {"psnr": psnr(out, clean), "ssim": ssim(out, clean), "seconds": round(seconds, 3)}


def dip(task: Task, config) -> dict:
    """One DIP run to the end of its budget, every step measured so the stop can be found afterwards."""
    keys = ("iter", "psnr", "ssim", "seconds", "step_ratios", "step_losses")
    records = [{k: getattr(s, k) for k in keys} for s in run(task, config)]
    if task.noise_sigma is not None:
        records[0]["noise_energy"] = task_noise_energy(task)  # the discrepancy rule's threshold
    best = max(records, key=lambda r: r["psnr"])
    rule = stop_rule(task)
    t = stop_iters(records, config.iterations)[rule]
    at = next((r for r in records if r["iter"] >= t), None) if t is not None else None
    end = records[-1]
    out = {f"best_{k}": best[k] for k in ("psnr", "ssim", "iter")} | {f"end_{k}": end[k] for k in ("psnr", "ssim")}
    out |= {"seconds": end["seconds"], "stop_rule": rule, "stop_iter": t}
    return out | {f"stop_{k}": None if at is None else at[k] for k in ("psnr", "ssim", "seconds")}


def load_mask(masks: str | None, image: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The mask of ``image`` from the folder ``masks`` (same file name, white = known), brought to ``shape`` by
    nearest-neighbour sampling, so a Bernoulli mask stays a Bernoulli mask (a filter would blur it into blobs)."""
    if not masks:
        return None
    m = load_image(Path(masks) / image.name)[0].mean(axis=2, keepdims=True)
    return (resize_mask(m, shape) >= 0.5).astype(np.float32)


def evaluate(path: Path, args: argparse.Namespace) -> dict:
    """Every method on one image."""
    img = load_image(path)[0]
    if args.max_side and max(img.shape[:2]) > args.max_side:
        img = resize_max_side(img, args.max_side)[0]
    task = make_task(args.task, img, args.level, mask=load_mask(args.masks, path, img.shape[:2]), seed=args.seed)
    clean = to_image(task.clean)
    row: dict = {"image": path.name, "size": f"{clean.shape[1]}×{clean.shape[0]}", "channels": clean.shape[2]}
    y = to_image(task.observation)
    row["observation"] = (
        {"psnr": psnr(y, clean), "ssim": ssim(y, clean)} if y.shape == clean.shape else None
    )  # SR: the low-res image has another size
    row["cbm3d"] = cbm3d(task)
    b = baseline(task)
    row["opencv"] = b.summary()
    common = dict(width=args.width, lr=args.lr, iterations=args.iters, every=args.every, seed=args.seed)
    common = {k: v for k, v in common.items() if v is not None}
    lam = args.lipschitz if args.lipschitz is not None else TASKS[args.task].paper_lipschitz
    row["vanilla"] = dip(task, preset(args.preset, lipschitz=0.0, measure_every_step=True, **common))
    row["controlled"] = dip(task, preset(args.preset, lipschitz=lam, measure_every_step=True, **common))
    row["lipschitz"] = lam
    return row


def table(rows: list[dict], task: str) -> list[str]:
    """The markdown table: PSNR / SSIM per method and image, seconds, and the mean row."""
    has_bm3d = any(r["cbm3d"] and "psnr" in r["cbm3d"] for r in rows)
    heads = ["image", "observation"] + (["CBM3D"] if has_bm3d else []) + ["OpenCV"]
    heads += ["vanilla DIP at its best (oracle)", "controlled at its stop", "controlled at the end"]
    heads += ["seconds: " + " / ".join((["CBM3D"] if has_bm3d else []) + ["OpenCV", "vanilla", "controlled"])]
    body = []

    def cell(d: dict | None, p: str = "psnr", s: str = "ssim", extra: str = "") -> str:
        if not d or d.get(p) is None:
            return "—" if not d or "unavailable" not in d else "unavailable"
        return f"{d[p]:.2f} / {d[s]:.3f}{extra}"

    cols: dict[str, list] = {}
    for r in rows:
        v, c = r["vanilla"], r["controlled"]
        cells = [r["image"] + f" ({r['size']})", cell(r["observation"])]
        if has_bm3d:
            cells.append(cell(r["cbm3d"]))
        cells.append(cell(r["opencv"]))
        cells.append(cell(v, "best_psnr", "best_ssim", f" @{v['best_iter']}"))
        stop = f" @{c['stop_iter']}" if c["stop_iter"] is not None else ""
        cells.append(cell(c, "stop_psnr", "stop_ssim", stop) if c["stop_iter"] is not None else "never fired")
        cells.append(cell(c, "end_psnr", "end_ssim"))
        secs = ([fmt((r["cbm3d"] or {}).get("seconds"), 1)] if has_bm3d else []) + [
            fmt(r["opencv"]["seconds"], 2),
            fmt(v["seconds"], 0),
            fmt(c["seconds"], 0),
        ]
        cells.append(" / ".join(secs))
        body.append(cells)
        for key, val in [
            ("observation", (r["observation"] or {}).get("psnr")),
            ("cbm3d", (r["cbm3d"] or {}).get("psnr")),
            ("opencv", r["opencv"]["psnr"]),
            ("vanilla", v["best_psnr"]),
            ("stop", c["stop_psnr"] if c["stop_iter"] is not None else c["end_psnr"]),
            ("end", c["end_psnr"]),
        ]:
            cols.setdefault(key, []).append(val)

    def mean(key: str) -> str:
        vals = cols.get(key, [])
        return fmt(float(np.mean(vals))) if vals and all(x is not None for x in vals) else "—"

    means = ["**mean PSNR**", mean("observation")] + ([mean("cbm3d")] if has_bm3d else []) + [mean("opencv")]
    means += [mean("vanilla"), mean("stop") + " (end where it never fired)", mean("end"), ""]
    return md_table(heads, [*body, means])


def verdict(rows: list[dict]) -> list[str]:
    """Where DIP stands, per image, against CBM3D and the OpenCV baseline (wins and losses, counted)."""
    lines = []
    for ref, name in (("cbm3d", "CBM3D"), ("opencv", "the OpenCV baseline")):
        pairs = [(r, (r[ref] or {}).get("psnr")) for r in rows]
        pairs = [(r, p) for r, p in pairs if p is not None]
        if not pairs:
            continue
        for key, what in (
            ("best_psnr", "vanilla DIP at its best (oracle)"),
            ("stop_psnr", "the controlled network at its stop (its end where the stop never fired)"),
            ("end_psnr", "the controlled network at its end"),
        ):
            src = "vanilla" if key == "best_psnr" else "controlled"
            diffs = [(r[src][key] if r[src][key] is not None else r[src]["end_psnr"]) - p for r, p in pairs]
            wins = sum(d > 0 for d in diffs)
            lines.append(
                f"- {what} vs {name}: ahead on {wins} of {len(diffs)} images, by {np.mean(diffs):+.2f} dB on "
                f"average (from {min(diffs):+.2f} to {max(diffs):+.2f})."
            )
    return lines


def report(rows: list[dict], args: argparse.Namespace, device: str) -> str:
    """The whole report."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cfg = rows[0]["controlled"] if rows else {}
    lines = [
        f"# Quality: DIP against classical restoration ({args.task}, level {args.level:g})",
        "",
        f"`python -m benchmarks quality {' '.join(sys.argv[1:]) if args.argv is None else ' '.join(args.argv)}`",
        "",
        f"{when}; {device}, {cpu()}, torch {torch.__version__}. Preset `{args.preset}`"
        + (f", width {args.width}" if args.width else "")
        + (f", lr {args.lr:g}" if args.lr else "")
        + (f", {args.iters} iterations" if args.iters else "")
        + (f", images downscaled to at most {args.max_side} px" if args.max_side else "")
        + f", seed {args.seed}; controlled = λ {rows[0]['lipschitz'] if rows else '—'}, stop rule "
        f"`{cfg.get('stop_rule', '—')}`. Cells: PSNR (dB) / SSIM, `@` the iteration. Vanilla DIP's best needs the "
        "clean image, so it is an oracle no user has; the controlled network's stop and end are what a user gets.",
        "",
        *table(rows, args.task),
        "",
        *verdict(rows),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser("quality", __doc__, width=None, lr=None, lipschitz=None, seed=0)
    p.add_argument("--images", required=True, nargs="+", help="clean images, or folders of them")
    p.add_argument("--task", default="denoise", choices=("denoise", "jpeg", "inpaint", "sr"))
    p.add_argument("--level", type=float, default=None, help="σ, JPEG quality, keep ratio or SR factor")
    p.add_argument("--masks", default=None, help="inpainting: a folder of masks named as the images (white = known)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-side", type=int, default=None)
    p.add_argument("--preset", default="cpu", choices=("cpu", "cuda", "paper"))
    p.add_argument("--iters", type=int)
    p.add_argument("--every", type=int, default=10)
    args = p.parse_args(argv)
    args.argv = argv

    args.level = TASKS[args.task].level.default if args.level is None else args.level
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    rows = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    done = {r["image"] for r in rows}
    device = str(resolve_device(preset(args.preset).device))
    for path in [f for spec in args.images for f in image_files(spec)]:
        if path.name in done:
            continue
        start = time.perf_counter()
        row = evaluate(path, args)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        (out / "report.md").write_text(report(rows, args, device))
    (out / "report.md").write_text(report(rows, args, device))
    print((out / "report.md").read_text())
    return 0
