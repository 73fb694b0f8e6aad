"""Pair-step benchmark: a compare run's two networks (vanilla and controlled) stepped separately or stacked.

    python -m benchmarks pair-speed [--device cuda] [--size 256] [--width 128] [--lipschitz 1.4] [--json]

Denoising σ = 25 on House resized to PX², the device preset's numerics (on CUDA its CUDA graph), metrics at
snapshots only (as the app runs), a snapshot every ``--chunk`` steps. Variants, interleaved chunk by chunk so
that drift hits all of them alike; the median over chunks after ``--warmup`` steps (past the power
iteration's warm-up and the graph's capture), in pair-steps per second (one step of both networks):

- ``separate``: the two runs one after the other (the app's compare mode on a GPU until now);
- ``threads`` (CPU): the two runs at once, one thread each (the app's compare mode on CPU);
- ``stacked``: both networks as one (``dip_core.stacked``: grouped convs, one optimizer, one graph);
- ``+eager`` / ``+bf16`` / ``+channels_last`` modify a variant: no CUDA graph, bf16 autocast, NHWC.

``reference``: the authors' step (``benchmarks.reference``) for one network, timed in the same rounds; the
ratio reported is two of their steps over one pair-step.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import torch

from dip_core import RunConfig, preset, run
from dip_core.autotune import resolve
from dip_core.stacked import run_stacked

from .common import denoise_task, interleave, machine, median_ms, pick_device, sync
from .options import parser, set_threads
from .step import ReferenceRunner

MODIFIERS = {"eager": dict(cuda_graph=False), "bf16": dict(precision="bf16"), "channels_last": dict(channels_last=True)}


def defaults(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["separate", "stacked", "stacked+eager", "stacked+bf16", "stacked+channels_last", "separate+eager"]
    return ["threads", "separate", "stacked"]


def pair_configs(
    device: torch.device, width: int, lipschitz: float, iterations: int, chunk: int, modifiers: dict
) -> list[RunConfig]:
    """Vanilla and controlled, the device preset's numerics with ``modifiers``, the same seed."""
    name = "cuda" if device.type == "cuda" else "cpu"
    base = preset(name, device=device.type, width=width, iterations=iterations, every=chunk, lr=1e-3)
    base = replace(base, conv_algo="direct", **modifiers)  # grouped convs take the direct path; the same for all
    return [replace(base, lipschitz=0.0), replace(base, lipschitz=lipschitz)]


class PairRunner:
    """One variant: each call advances both networks by one snapshot (``chunk`` steps) and returns the
    seconds per pair-step of that chunk (synced at the snapshot, which fetches the metrics)."""

    def __init__(self, variant: str, task, configs: list[RunConfig], device: torch.device) -> None:
        kind = variant.split("+")[0]
        self.device, self.chunk, self.pool = device, configs[0].every, None
        if kind == "stacked":
            self.gens = [run_stacked(task, [resolve(task, c) for c in configs])]
        elif kind in ("separate", "threads"):
            self.gens = [run(task, c) for c in configs]
            if kind == "threads":
                self.pool = ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,))
        else:
            raise SystemExit(f"error: unknown variant {variant!r} (stacked, separate or threads)")
        self.advance()  # build the networks and take step 1

    def advance(self) -> None:
        if self.pool is not None:  # torch's thread count is process-wide: one each while the pair runs
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            list(self.pool.map(next, self.gens))
            torch.set_num_threads(threads)
        else:
            for g in self.gens:
                next(g)

    def __call__(self) -> list[float]:
        sync(self.device)
        start = time.perf_counter()
        self.advance()
        sync(self.device)
        return [(time.perf_counter() - start) / self.chunk]

    def close(self) -> None:
        for g in self.gens:
            g.close()
        if self.pool is not None:
            self.pool.shutdown()


def bench(
    device: torch.device,
    size: int,
    width: int,
    lipschitz: float,
    variants: list[str],
    chunk: int,
    rounds: int,
    warmup: int,
    ref_steps: int,
) -> dict:
    """Median pair-steps per second of each variant (and the authors' step), after ``warmup`` steps."""
    iterations = warmup + (rounds + 2) * chunk
    runners = {}
    for v in variants:
        mods = {}
        for m in v.split("+")[1:]:
            if m not in MODIFIERS:
                raise SystemExit(f"error: unknown modifier {m!r} (one of {', '.join(MODIFIERS)})")
            mods.update(MODIFIERS[m])
        runners[v] = PairRunner(
            v, denoise_task(size), pair_configs(device, width, lipschitz, iterations, chunk, mods), device
        )
    for _ in range(max(1, warmup // chunk)):  # warm-up chunks, not timed
        for r in runners.values():
            r()
    if ref_steps:
        runners["reference"] = ReferenceRunner(denoise_task(size), max(1, -(-ref_steps // rounds)), device)
    times = interleave(runners, rounds)
    for r in runners.values():
        r.close()
    out = {"size": size, "width": width, "lipschitz": lipschitz, "chunk": chunk, "rounds": rounds, "warmup": warmup}
    out["ms_per_pair_step"] = {v: round(median_ms(times[v]), 3) for v in variants}
    out["pair_steps_per_s"] = {v: round(1000 / out["ms_per_pair_step"][v], 1) for v in variants}
    if ref_steps:
        ref_ms = median_ms(times["reference"])
        out["reference_ms_per_step"] = round(ref_ms, 2)
        out["x_authors_pair"] = {v: round(2 * ref_ms / out["ms_per_pair_step"][v], 1) for v in variants}
    out["machine"] = machine(device)
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("pair-speed", __doc__, device="auto", size=256, width=128, lipschitz=1.4, threads=None, json=False)
    p.add_argument("--variants", nargs="+", help="default: by device (see the module docstring)")
    p.add_argument("--chunk", type=int, default=50, help="steps per timed chunk (a snapshot each)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--ref-steps", type=int, default=0, help="steps of the authors' loop to time (0: none)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    set_threads(args.threads)
    result = bench(
        device,
        args.size,
        args.width,
        args.lipschitz,
        args.variants or defaults(device),
        args.chunk,
        args.rounds,
        args.warmup,
        args.ref_steps,
    )
    print(
        json.dumps(result) if args.json else json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1)
    )
    return 0
