"""The curve of a candidate GPU default, through the app's own code (``parse_request`` + ``LabRun``, the ``cuda``
preset, compare mode) on whatever device is here; one JSON line per network per snapshot, flushed as it goes.

    python -m benchmarks gpu-defaults --side 256 --width 64 --lr 0.001 --iterations 1000 --out curve.jsonl
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from .options import parser, set_threads

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = parser("gpu-defaults", __doc__, image=str(ROOT / "assets" / "house256.png"), width=64, lr=0.001, threads=1)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    set_threads(args.threads)
    from demo.inputs import parse_request
    from demo.session import LabRun
    from demo.settings import limits_for

    lim = replace(limits_for("cuda", zero_gpu=True), iterations_cap=100_000, every=args.every)
    req = parse_request(
        args.image,
        iterations=args.iterations,
        max_side=args.side,
        width=args.width,
        lr=args.lr,
        compare=True,
        limits=lim,
    )
    lab = LabRun(req, limits=lim)
    start = time.perf_counter()
    with open(args.out, "w") as f:
        for _ in lab.steps():
            for name, t in lab.tracks.items():
                s = t.last
                row = {
                    "run": name,
                    "iter": s.iter,
                    "psnr": s.psnr,
                    "fbc": s.fbc,
                    "s": round(time.perf_counter() - start, 1),
                }
                f.write(json.dumps(row) + "\n")
            f.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
