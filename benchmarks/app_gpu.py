"""The app as a ZeroGPU visitor meets it: launched with the GPU budget on, driven through ``gradio_client`` with
its defaults; prints one JSON object (seconds to the first frame, GPU seconds used against those requested,
PSNR of both networks at the end and vanilla's best).

    python -m benchmarks app-gpu                      # on a GPU: the app's CUDA defaults
    python -m benchmarks app-gpu --iterations 20 --max-side 32 --width 8   # a CPU smoke run
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time

from .common import HOUSE
from .options import parser


def main(argv: list[str] | None = None) -> int:
    p = parser("app-gpu", __doc__, image=str(HOUSE), width=None)
    p.add_argument("--iterations", type=int, help="default: the app's")
    p.add_argument("--max-side", type=int)
    args = p.parse_args(argv)
    os.environ["SPECTRAL_BIAS_LAB_GPU_BUDGET"] = "1"  # request_seconds, the deadline and the status line, no spaces
    from gradio_client import Client, handle_file

    from benchmarks import load
    from demo.form import RUN_OUTPUTS
    from demo.settings import LIMITS

    demo, url = load.serve(4)
    client = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="app-gpu-"))
    given = dict(iterations=args.iterations, max_side=args.max_side, width=args.width)
    overrides = {k: v for k, v in given.items() if v is not None}
    start = time.perf_counter()
    job = client.submit(image=handle_file(args.image), api_name="/run", **overrides)
    first = None
    while not job.done():
        if first is None and job.outputs():
            first = time.perf_counter() - start
        time.sleep(0.05)
    final = job.outputs()[-1]
    total = time.perf_counter() - start
    status = final[RUN_OUTPUTS.index("status")]
    used = re.search(r"GPU (\d+) s of (\d+) s requested", status)
    psnr = dict(re.findall(r"(vanilla|controlled) ([\d.]+) dB", status))
    best = re.search(r"vanilla [\d.]+ dB \(best ([\d.]+) at (\d+)", status)
    out = {
        "device": LIMITS.device,
        "defaults": {k: getattr(LIMITS, k) for k in ("max_side", "width", "iterations", "lr")} | overrides,
        "seconds_to_first_frame": None if first is None else round(first, 2),
        "seconds_total_client": round(total, 2),
        "gpu_seconds_used": None if used is None else int(used.group(1)),
        "gpu_seconds_requested": None if used is None else int(used.group(2)),
        "psnr_end": {k: float(v) for k, v in psnr.items()},
        "vanilla_best": None if best is None else {"psnr": float(best.group(1)), "iter": int(best.group(2))},
        "status": status,
    }
    print(json.dumps(out))
    client.close()
    demo.close()
    return 0
