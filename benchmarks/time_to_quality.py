"""Time to quality: wall-clock seconds until denoising House reaches 30 dB, reference against our preset.

    python -m benchmarks time-to-quality [--json] [--size PX] [--steps N] [--ref-steps N] ...

Denoising σ = 25 on House (256² by default), noise and network seeded. Lanes, advanced alternately in
chunks in one process so that machine drift hits all of them alike; each lane's clock only counts its
own steps (its measurements and snapshots included, its construction not):

- ``reference_vanilla``: the authors' configuration (128 ch, reflection padding, lr 1e-3, fp32), λ = 0,
  with their numpy measurements every step (benchmarks/reference.py).
- ``reference_controlled``: the same with λ = 1.4 and exact SVD every step. Gives ``reference_peak_psnr``.
  ``reference_s_to_30db`` is the earlier of the two reference lanes to reach the target (vanilla DIP's
  smoothed PSNR on House 256² peaks just below 30 dB; ``reference_lane_to_target`` says which).
- ``preset`` (``--steps``): ``dip_core.run`` with the CPU/CUDA preset the app and the CLI use (λ from
  ``--preset-lipschitz``), measuring PSNR/ratio/FBC on the device every step. Gives ``preset_s_to_30db``
  and ``preset_peak_psnr``.
- ``preset_vanilla`` / ``preset_controlled`` (with ``--long-steps``): the preset with λ = 0 and with
  λ = ``--controlled-lipschitz`` over a longer budget: does vanilla still decay, does controlled hold?
- ``same_controlled``: the authors' network and λ = 1.4 (128 ch, lr 1e-3) with the preset's numerics
  (padding, σ method, conv algorithm, precision): is the curve unchanged against ``reference_controlled``?

``--merge FILE ...`` adds lanes from earlier ``--json --curves`` outputs of this command (same image,
size, σ and seed), so that expensive reference lanes need not be rerun; merged lanes are marked.

"Reaches 30 dB" means the trailing ``--window``-step (25) moving average of the per-step PSNR first
gets to ``--target`` (30.0). Seconds are measured wall-clock; ``*_projected_s`` (steps × the lane's
median step time) is given too, as it is robust to load spikes on a shared machine.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from dip_core import MAX_ITERATIONS, InputError, RunConfig, Task, preset
from dip_core.summary import target_summary

from . import common
from .options import parser, record, set_threads
from .reference import NETWORK, ReferenceRunner

LANES = (
    "reference_vanilla",
    "reference_controlled",
    "same_controlled",
    "preset",
    "preset_vanilla",
    "preset_controlled",
)


class Lane:
    """One run advanced a chunk at a time by its runner (a ``ReferenceRunner`` or an ``EngineRunner``; none for a
    merged lane): its per-step PSNR and wall time, a snapshot's own cost charged to the step that took it."""

    def __init__(self, name: str, budget: int, config: RunConfig | dict, runner: object = None) -> None:
        self.name, self.budget, self.config, self.runner = name, budget, config, runner
        self.psnr: list[float] = []
        self.seconds: list[float] = []

    @property
    def done(self) -> bool:
        return len(self.psnr) >= self.budget

    def advance(self) -> None:
        """Run the next chunk."""
        if isinstance(self.runner, ReferenceRunner):
            self.seconds += self.runner(min(self.runner.chunk, self.budget - len(self.psnr)))
            self.psnr = self.runner.psnr
            return
        steps = self.runner()  # up to the next snapshot (config.every steps, or 1 at the start)
        if steps:
            steps[-1] += self.runner.snapshot_s
        self.seconds += steps
        self.psnr += [p for _, p in self.runner.snap.step_psnrs]
        if self.runner.snap.done:
            self.budget = len(self.psnr)  # finished (or stopped early on a non-finite loss)

    def close(self) -> None:
        """Free what the lane holds."""
        getattr(self.runner, "close", lambda: None)()


def engine_lane(name: str, task: Task, config: RunConfig, budget: int, device: torch.device) -> Lane:
    """``engine.run`` measuring every step, timed by its ``on_step`` hook (benchmarks/common.py's EngineRunner)."""
    config = replace(config, iterations=min(budget, MAX_ITERATIONS), measure_every_step=True)
    return Lane(name, budget, config, common.EngineRunner(task, config, device))


def lanes_json(lanes: list[Lane], target: float, window: int) -> dict:
    """The lanes' summaries, per-step PSNR and step seconds, as ``--json --curves`` writes them."""
    return {
        "lanes": {lane.name: summarise(lane, target, window) for lane in lanes},
        "curves": {lane.name: [round(v, 3) for v in lane.psnr] for lane in lanes},
        "step_seconds": {lane.name: [round(v, 4) for v in lane.seconds] for lane in lanes},
    }


def summarise(lane: Lane, target: float, window: int) -> dict:
    """A lane's configuration, then its crossing step and time, peaks, final level and decay (``target_summary``)."""
    config = lane.config if isinstance(lane.config, dict) else common.config_summary(lane.config)
    return {"config": config, **target_summary(lane.psnr, lane.seconds, target, window)}


@dataclass(frozen=True)
class Options:
    """What ``benchmark`` runs: the task, the lanes and their budgets, the target, the outputs."""

    size: int = 256
    sigma: float = 25.0
    seed: int = 0
    steps: int = 600
    ref_steps: int = 450
    ref_controlled_steps: int = 700
    long_steps: int = 0
    lanes: tuple[str, ...] = ("reference_vanilla", "reference_controlled", "preset")
    preset_name: str = "auto"
    preset_lipschitz: float | None = None
    controlled_lipschitz: float = 1.4
    target: float = 30.0
    window: int = 25
    chunk: int = 10
    device: str = "auto"
    image: str | None = None
    curves: bool = False
    overrides: dict = field(default_factory=dict)
    merge: tuple[str, ...] = ()
    partial: str | None = None


def make_lanes(o: Options, dev: torch.device) -> list[Lane]:
    """The lanes ``o.lanes`` names, each on its own task."""
    base = preset(
        o.preset_name if o.preset_name != "auto" else common.device_preset(dev),
        device=dev.type,
        seed=o.seed,
        every=o.chunk,
        **o.overrides,
    )
    if o.preset_lipschitz is not None:
        base = replace(base, lipschitz=o.preset_lipschitz)
    same = replace(base, **NETWORK)
    engine = {
        "preset": (base, o.steps),
        "preset_vanilla": (replace(base, lipschitz=0.0), o.long_steps or o.steps),
        "preset_controlled": (replace(base, lipschitz=o.controlled_lipschitz), o.long_steps or o.steps),
        "same_controlled": (same, o.ref_controlled_steps),
    }
    reference = {"reference_vanilla": (0.0, o.ref_steps), "reference_controlled": (1.4, o.ref_controlled_steps)}
    made: list[Lane] = []
    for lane in o.lanes:
        task = common.denoise_task(o.size, o.sigma, o.seed, o.image)
        if lane in reference:
            lam, budget = reference[lane]
            config = {"configuration": "authors (benchmarks/reference.py)", "lipschitz": lam}
            made.append(Lane(lane, budget, config, ReferenceRunner(task, o.chunk, dev, lam)))
        elif lane in engine:
            made.append(engine_lane(lane, task, *engine[lane], dev))
        else:
            raise ValueError(f"unknown lane {lane!r}")
    return made


def drive(made: list[Lane], o: Options, dev: torch.device) -> None:
    """Advance the lanes alternately, a chunk each, until every one is done (``o.partial``: rewritten each round)."""
    try:
        while not all(lane.done for lane in made):
            for lane in made:
                if not lane.done:
                    lane.advance()
            if o.partial:  # survives a kill: the lanes so far, in the --curves format (usable by --merge)
                snapshot = dict(size=o.size, sigma=o.sigma, seed=o.seed, machine=common.machine(dev), partial=True)
                Path(o.partial).write_text(json.dumps({**snapshot, **lanes_json(made, o.target, o.window)}))
    finally:
        for lane in made:
            lane.close()


def merge(done: dict, o: Options) -> None:
    """Add the lanes of earlier ``--json --curves`` outputs that this run did not run."""
    for path in o.merge:
        old = json.loads(Path(path).read_text())
        if (old["size"], old["sigma"], old["seed"]) != (o.size, o.sigma, o.seed) or "curves" not in old:
            raise ValueError(f"{path}: not a --curves output for size {o.size}, σ {o.sigma:g}, seed {o.seed}")
        for name, values in old["curves"].items():
            if name in done["lanes"]:
                continue
            config = {**old["lanes"][name]["config"], "merged_from": f"{path} ({old['machine']['date']})"}
            lane = Lane(name, len(values), config)
            lane.psnr, lane.seconds = values, old["step_seconds"][name]
            done["lanes"][name] = summarise(lane, o.target, o.window)
            done["curves"][name], done["step_seconds"][name] = values, lane.seconds


def benchmark(o: Options = Options()) -> dict:
    """Run the lanes interleaved and return the result dict (see the module docstring)."""
    dev = common.pick_device(o.device)
    made = make_lanes(o, dev)
    started = time.perf_counter()
    drive(made, o, dev)
    done = lanes_json(made, o.target, o.window)
    merge(done, o)
    summary = done["lanes"]
    ref_c, pre = summary.get("reference_controlled", {}), summary.get("preset", {})
    # the reference's time to the target: its first lane to get there (vanilla DIP's smoothed PSNR may
    # peak just below 30 dB on House, the controlled one's passes it)
    reached = [n for n in ("reference_vanilla", "reference_controlled") if summary.get(n, {}).get("s_to_target")]
    ref_lane = min(reached, key=lambda n: summary[n]["s_to_target"]) if reached else "reference_vanilla"
    ref = summary.get(ref_lane, {})
    result = {
        "reference_s_to_30db": ref.get("s_to_target"),
        "preset_s_to_30db": pre.get("s_to_target"),
        "speedup": common.ratio(ref.get("s_to_target"), pre.get("s_to_target"), 2),
        "preset_peak_psnr": pre.get("peak_psnr"),
        "reference_peak_psnr": ref_c.get("peak_psnr"),
        # extras
        "reference_lane_to_target": ref_lane if reached else None,
        "projected_speedup": common.ratio(ref.get("projected_s_to_target"), pre.get("projected_s_to_target"), 2),
        "device": common.device_name(dev),
        **{k: getattr(o, k) for k in ("size", "sigma", "seed")},
        "target_db": o.target,
        "window": o.window,
        "lanes": summary,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": common.machine(dev),
    }
    same = summary.get("same_controlled")
    if same and ref_c:
        result["same_vs_reference_peak_db"] = round(same["peak_psnr"] - ref_c["peak_psnr"], 3)
        result["same_vs_reference_peak_ma_db"] = round(same["peak_ma_psnr"] - ref_c["peak_ma_psnr"], 3)
    if o.curves:
        result["curves"], result["step_seconds"] = done["curves"], done["step_seconds"]
    return result


def main(argv: list[str] | None = None) -> int:
    shared = dict(size=256, seed=0, steps=600, width=None, lr=None, device="auto", threads=None, image=None)
    p = parser("time-to-quality", __doc__, **shared, json=False)
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--ref-steps", type=int, default=450, help="budget of reference_vanilla")
    p.add_argument("--ref-controlled-steps", type=int, default=700, help="budget of reference_controlled")
    p.add_argument("--long-steps", type=int, default=0, help="budget of preset_vanilla/preset_controlled")
    p.add_argument("--lanes", default="reference_vanilla,reference_controlled,preset", help=",".join(LANES))
    p.add_argument("--preset", default="auto", choices=("auto", "cpu", "cuda", "paper"))
    p.add_argument("--preset-lipschitz", type=float, help="λ of the preset lane (default: the preset's)")
    p.add_argument("--controlled-lipschitz", type=float, default=1.4)
    p.add_argument("--target", type=float, default=30.0)
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--chunk", type=int, default=10, help="steps per lane per round (and snapshot interval)")
    p.add_argument("--curves", action="store_true", help="include per-step PSNR and step times in the JSON")
    p.add_argument("--merge", nargs="+", help="add the lanes of earlier --json --curves outputs")
    p.add_argument("--partial", help="rewrite this JSON file after every round (curves so far)")
    args = p.parse_args(argv)
    if args.size % 32 or args.size < 32:
        p.error("--size must be a positive multiple of 32")
    lanes = tuple(x for x in args.lanes.split(",") if x)
    if unknown := set(lanes) - set(LANES):
        p.error(f"unknown lane(s): {', '.join(sorted(unknown))}")
    set_threads(args.threads)
    overrides = {k: v for k, v in (("width", args.width), ("lr", args.lr)) if v is not None}
    o = record(Options, args, lanes=lanes, overrides=overrides, preset_name=args.preset, merge=tuple(args.merge or ()))
    try:
        result = benchmark(o)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    common.emit(result, args.json)
    return 0
