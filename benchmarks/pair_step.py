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
ratio reported is two of their steps over one pair-step. The machinery is benchmarks/step.py's.
"""

from __future__ import annotations

from .common import emit
from .options import parser, record, set_threads
from .step import PairOptions, pair_benchmark


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks pair-speed``."""
    p = parser("pair-speed", __doc__, device="auto", size=256, width=128, lipschitz=1.4, threads=None, json=False)
    p.add_argument("--variants", nargs="+", help="default: by device (see the module docstring)")
    p.add_argument("--chunk", type=int, default=50, help="steps per timed chunk (a snapshot each)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--ref-steps", type=int, default=0, help="steps of the authors' loop to time (0: none)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    emit(pair_benchmark(record(PairOptions, args, variants=tuple(args.variants or ()))), args.json)
    return 0
