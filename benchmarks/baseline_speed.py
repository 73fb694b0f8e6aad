"""Seconds each task's classical (OpenCV) baseline takes on an image of a given size, colour and grey.

    python -m benchmarks baseline-speed [--size 512] [--repeats 5] [--image PATH] [--json]

Each task degrades the image at its default level as the engine does (``make_task``, seed 0), then
``dip_core.tasks.baseline`` runs on the observation (the call every CLI and app run makes); the figures
are medians over ``--repeats`` calls after one untimed call: the method alone (``Baseline.seconds``), and
the whole call with its PSNR/SSIM against the clean image. The default images are the
repository's own (assets/astronaut.png in colour, assets/camera.png in grey), resized to ``--size``² (bicubic,
``common.house``): the baselines' cost depends on the pixel count, not on the content.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from dip_core import TASKS, baseline, make_task

from .common import ROOT, house, machine
from .options import parser

ASSETS = ROOT / "assets"


def seconds(image: np.ndarray, task: str, repeats: int) -> tuple[float, float, str]:
    """Median seconds of the task's baseline on ``image`` degraded at the task's default level (the method
    alone, as ``Baseline.seconds`` reports it; then with the PSNR/SSIM scoring against the clean image), and
    the method's name."""
    t = make_task(task, image, seed=0)
    first = baseline(t)
    if first.unavailable:
        raise SystemExit(f"error: {first.unavailable}")
    alone, scored = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        alone.append(baseline(t).seconds)
        scored.append(time.perf_counter() - start)
    return statistics.median(alone), statistics.median(scored), first.method


def main(argv: list[str] | None = None) -> int:
    p = parser("baseline-speed", __doc__, size=512, image=ASSETS / "astronaut.png", json=False)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--grey", type=Path, default=ASSETS / "camera.png", help="the grey image")
    args = p.parse_args(argv)
    images = {"colour": house(args.size, args.image), "grey": house(args.size, args.grey)}
    rows = []
    for task in TASKS:
        for kind, img in images.items():
            s, scored, method = seconds(img, task, args.repeats)
            rows.append({"task": task, "image": kind, "method": method, "seconds": s, "with_scoring_s": scored})
    result = {
        "size": args.size,
        "repeats": args.repeats,
        "cv2_threads": cv2.getNumThreads(),
        "rows": rows,
        "slowest_s": max(r["seconds"] for r in rows),
        "machine": machine(torch.device("cpu")),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"| task | image | method | seconds at {args.size}² | with PSNR/SSIM |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['task']} | {r['image']} | {r['method']} | {r['seconds']:.3f} | {r['with_scoring_s']:.3f} |")
    return 0
