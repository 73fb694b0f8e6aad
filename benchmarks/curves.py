"""Do two numeric paths give the same curve? Denoising House under each variant, against a reference variant.

    python -m benchmarks curves --reference SPEC --variants SPEC [SPEC ...] [--preset P] [--device D] [--pair]
                                [--size 256] [--width 128] [--steps 400] [--lipschitz 1.4] [--tol 0.3] [--json]

Every variant is the base run (the ``--preset``'s numerics on ``--device``, ``--width``, ``--lr``, ``--lipschitz``,
``--set``) with the settings of its SPEC, ``NAME:key=value,...`` (RunConfig fields, plus ``preset=P`` for another
preset's numerics and, with ``--pair``, ``stacked=1``: both networks as one, ``dip_core.stacked``). ``--pair``
runs vanilla and λ together, as the app's compare run. Same seed, noise and network everywhere, PSNR measured
every step. Single iterates of two numeric paths drift apart chaotically, so the figures compare the trailing
25-step moving averages of PSNR: a variant passes when, for every network, their mean absolute gap is at most
``--tol`` dB (and the gap between their peaks at most ``--peak-tol``) and no CUDA-graph capture fell back.
Each lane's median step time is reported (a pair run separately: one network's step). Exit status 1 when a
variant misses. The checks made so far (device_curves, graph_check, precision and fast_path before):

    curves --preset paper --device cpu --size 128 --reference cpu
           --variants cuda:preset=cuda,device=cuda --tol 0.5 --peak-tol 0.3
    curves --preset cuda --device cuda --reference eager:cuda_graph=0 --variants graph:cuda_graph=1
    curves --preset cpu --device cpu --steps 1000 --set conv_algo=direct,channels_last=1
           --reference fp32:precision=fp32 --variants bf16:precision=bf16
    curves --pair --device cuda --steps 2000 --set conv_algo=direct --reference separate+eager:cuda_graph=0
           --variants stacked:stacked=1 stacked+bf16:stacked=1,precision=bf16
           stacked+channels_last:stacked=1,channels_last=1
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field

import torch

from dip_core import RunConfig, preset, resolve, run
from dip_core.stacked import run_stacked
from dip_core.summary import trailing_average

from . import common
from .options import parser

WINDOW = 25


@dataclass
class Variant:
    """One lane: a name and the settings that differ from the base run."""

    name: str
    settings: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """``NAME:key=value,...``, ``key=value,...`` (named by itself) or ``NAME`` (the base run)."""
        return cls(*common.parse_variant(spec, extra={"preset": str, "stacked": bool}))


def configs(variant: Variant, base: dict, pair: bool) -> list[RunConfig]:
    """The variant's network configs (vanilla and λ with ``pair``), every step measured."""
    settings = {**base, **variant.settings}
    settings.pop("stacked", None)
    name = settings.pop("preset")
    if name == "auto":
        name = common.device_preset(common.pick_device(settings["device"]))
    lams = (0.0, settings["lipschitz"]) if pair else (settings["lipschitz"],)
    return [preset(name, **{**settings, "lipschitz": lam, "measure_every_step": True}) for lam in lams]


def lane(variant: Variant, base: dict, size: int, seed: int, pair: bool) -> dict:
    """Per-step PSNR of each network, the median ms of a step and the warnings the run raised."""
    task = common.denoise_task(size, seed=seed)
    cfgs = [resolve(task, c) for c in configs(variant, base, pair)]  # conv_algo="auto": this machine's path
    clock = common.StepClock(common.pick_device(cfgs[0].device))
    psnr: list[list[float]] = [[] for _ in cfgs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if variant.settings.get("stacked"):
            for snaps in run_stacked(task, cfgs, cancel=clock.mark):
                for i, s in enumerate(snaps):
                    psnr[i] += [p for _, p in s.step_psnrs] if s is not None else []
        else:
            for i, c in enumerate(cfgs):
                psnr[i] = [p for s in run(task, c, cancel=clock.mark) for _, p in s.step_psnrs]
    return {
        "psnr": psnr,
        "median_step_ms": common.median_ms(clock.deltas()),
        "warnings": [str(w.message) for w in caught],
    }


def compare(a: list[float], b: list[float], window: int = WINDOW) -> dict:
    """Two per-step PSNR curves' trailing moving averages: their gaps, peaks and ends (dB)."""
    ma, mb = trailing_average(a, window), trailing_average(b, window)
    pairs = [(x, y) for x, y in zip(ma, mb) if x is not None and y is not None]
    gaps = [abs(x - y) for x, y in pairs]
    peak_a, peak_b = max(x for x, _ in pairs), max(y for _, y in pairs)
    gap = dict(mean_abs_gap_db=sum(gaps) / len(gaps), max_abs_gap_db=max(gaps), peak_ma_a=peak_a, peak_ma_b=peak_b)
    gap |= dict(peak_gap_db=abs(peak_a - peak_b), final_ma_a=pairs[-1][0], final_ma_b=pairs[-1][1])
    return {k: round(v, 3) for k, v in gap.items()}


def check(
    reference: Variant,
    variants: list[Variant],
    base: dict,
    size: int,
    seed: int = 0,
    pair: bool = False,
    tol: float = 0.3,
    peak_tol: float | None = None,
) -> dict:
    """Every variant's curves against the reference's, with the verdict (see the module's docstring)."""
    nets = ("vanilla", "controlled") if pair else ("network",)
    ref = lane(reference, base, size, seed, pair)
    result: dict = dict(size=size, seed=seed, pair=pair, base=base, tol_db=tol, peak_tol_db=peak_tol)
    result["reference"] = dict(name=reference.name, settings=reference.settings, median_step_ms=ref["median_step_ms"])
    result["variants"] = {}
    for v in variants:
        got = lane(v, base, size, seed, pair)
        gaps = {n: compare(r, g) for n, r, g in zip(nets, ref["psnr"], got["psnr"])}
        fell_back = any("capture" in w.lower() for w in got["warnings"])
        ok = not fell_back and all(
            g["mean_abs_gap_db"] <= tol and (peak_tol is None or g["peak_gap_db"] <= peak_tol) for g in gaps.values()
        )
        result["variants"][v.name] = {
            "settings": v.settings,
            **gaps,
            "median_step_ms": got["median_step_ms"],
            "speedup": common.ratio(ref["median_step_ms"], got["median_step_ms"], 2),
            "warnings": got["warnings"][:5],
            "fell_back": fell_back,
            "ok": ok,
        }
    result["ok"] = all(v["ok"] for v in result["variants"].values())
    return result


def main(argv: list[str] | None = None) -> int:
    p = parser(
        "curves", __doc__, device="auto", size=256, width=128, lipschitz=1.4, lr=1e-3, steps=400, seed=0, json=False
    )
    p.add_argument("--preset", default="auto", choices=("auto", "cpu", "cuda", "paper"), help="the base's numerics")
    p.add_argument("--set", default="", help="settings of every lane: key=value,...")
    p.add_argument("--pair", action="store_true", help="vanilla and λ together, as the app's compare run")
    p.add_argument("--reference", required=True, help="the reference lane, NAME:key=value,...")
    p.add_argument("--variants", nargs="+", required=True, help="the lanes compared with it")
    p.add_argument("--tol", type=float, default=0.3, help="bound on the mean |ΔMA25| of each network (dB)")
    p.add_argument("--peak-tol", type=float, help="bound on the gap between the MA25 peaks (dB)")
    args = p.parse_args(argv)
    try:
        base = dict(preset=args.preset, device=args.device, width=args.width, lr=args.lr, lipschitz=args.lipschitz)
        base |= dict(iterations=args.steps, seed=args.seed, every=50)
        base |= common.parse_settings(args.set, extra={"preset": str})
        lanes = [Variant.parse(s) for s in (args.reference, *args.variants)]
    except ValueError as err:
        p.error(str(err))
    if "cuda" in {args.device, *(v.settings.get("device") for v in lanes)} and not torch.cuda.is_available():
        print("error: a lane runs on CUDA but no CUDA GPU is available", file=sys.stderr)
        return 2
    result = check(lanes[0], lanes[1:], base, args.size, args.seed, args.pair, args.tol, args.peak_tol)
    devices = {args.device, *(v.settings.get("device", args.device) for v in lanes)}
    result["machine"] = common.machine(common.pick_device("cuda" if "cuda" in devices else args.device))
    common.emit(result, args.json)
    return 0 if result["ok"] else 1
