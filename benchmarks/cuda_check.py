"""CUDA check: the same run on CPU and CUDA gives the same curve; step time of the GPU configurations.

python -m benchmarks.cuda_check [--size 512] [--steps 30] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dip_core import make_task, preset
from dip_core.engine import Stepper, build, run_to_end
from dip_core.io import load_image, resize_max_side

ROOT = Path(__file__).resolve().parent.parent


def curves_agree(steps: int = 200) -> dict:
    """PSNR curve of a small denoising run on CPU and on CUDA (same seed), and their largest gap."""
    img = resize_max_side(load_image(ROOT / "assets" / "house256.png")[0], 64)[0]
    out = {}
    for device in ("cpu", "cuda"):
        task = make_task("denoise", img, 25, seed=0)
        cfg = preset("cpu", device=device, width=32, depth=4, iterations=steps, every=10, lr=0.005, lipschitz=1.4)
        out[device] = [s.psnr for s in run_to_end(task, cfg)]
    gap = float(np.max(np.abs(np.array(out["cpu"]) - np.array(out["cuda"]))))
    return {"psnr_cpu": out["cpu"], "psnr_cuda": out["cuda"], "max_gap_db": gap}


def step_ms(size: int, steps: int, **overrides) -> float:
    """Median ms per training step (the engine's ``Stepper``: forward, loss, backward, Adam) at size², synced."""
    rng = np.random.default_rng(0)
    task = make_task("denoise", rng.random((size, size, 3)).astype(np.float32), 25)
    cfg = preset("paper", device="cuda", **overrides)
    step = Stepper(build(task, cfg), cfg, task)
    times = []
    for i in range(steps + 10):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(i + 1, last=False)
        torch.cuda.synchronize()
        if i >= 10:
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "size": args.size}
    result["curves"] = curves_agree()
    print("max PSNR gap cpu vs cuda (dB):", result["curves"]["max_gap_db"], flush=True)
    configs = {
        "paper_svd_reflect_fp32": dict(lipschitz=1.4),
        "vanilla_reflect_fp32": dict(lipschitz=0.0),
        "power_reflect_fp32": dict(lipschitz=1.4, sn_method="power"),
        "power_reflect_fp32_cl": dict(lipschitz=1.4, sn_method="power", channels_last=True),
        "power_reflect_bf16_cl": dict(lipschitz=1.4, sn_method="power", channels_last=True, precision="bf16"),
        "power_zeros_bf16_cl": dict(
            lipschitz=1.4, sn_method="power", channels_last=True, precision="bf16", padding="zeros"
        ),
    }
    result["step_ms"] = {}
    for name, kw in configs.items():
        ms = step_ms(args.size, args.steps, **kw)
        result["step_ms"][name] = ms
        print(f"{name}: {ms:.2f} ms/step = {1000 / ms:.1f} steps/s", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
