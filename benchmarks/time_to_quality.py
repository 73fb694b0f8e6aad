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
from dataclasses import replace
from pathlib import Path

import torch

from dip_core import autotune, run
from dip_core.curves import target_summary
from dip_core.engine import MAX_ITERATIONS, Meter, Recorder, RunConfig, Stepper, build, preset
from dip_core.errors import InputError

from .common import StepClock, config_summary, denoise_task, machine, pick_device, ratio, sync
from .options import parser, set_threads
from .reference import ReferenceRun

LANES = (
    "reference_vanilla",
    "reference_controlled",
    "same_controlled",
    "preset",
    "preset_vanilla",
    "preset_controlled",
)


class Lane:
    """One run advanced chunk by chunk; collects per-step PSNR and per-step wall time."""

    name: str
    budget: int

    def __init__(self) -> None:
        self.psnr: list[float] = []
        self.seconds: list[float] = []  # wall time of each step (snapshot cost on the step that took it)

    @property
    def done(self) -> bool:
        return len(self.psnr) >= self.budget

    def advance(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- checkpoints (--checkpoint DIR): a killed run resumes where it stopped, with identical results
    def modules(self) -> tuple[torch.nn.Module, torch.optim.Optimizer] | None:
        return None

    def save(self, folder: Path) -> None:
        mods = self.modules()
        if mods is None:
            return
        net, opt = mods
        updates = [getattr(m, "_updates", None) for m in net.modules()]
        data = {"psnr": self.psnr, "seconds": self.seconds, "net": net.state_dict(), "opt": opt.state_dict()}
        data.update(updates=updates, key=self.key(), t=getattr(self, "t", len(self.psnr)))
        tmp = folder / f"{self.name}.pt.tmp"
        torch.save(data, tmp)
        tmp.replace(folder / f"{self.name}.pt")

    def restore(self, folder: Path) -> bool:
        path, mods = folder / f"{self.name}.pt", self.modules()
        if mods is None or not path.exists():
            return False
        data = torch.load(path, weights_only=False)
        if data["key"] != self.key():
            return False
        net, opt = mods
        net.load_state_dict(data["net"])
        opt.load_state_dict(data["opt"])
        for m, n in zip(net.modules(), data["updates"]):
            if n is not None:
                m._updates = n
        self.psnr, self.seconds = data["psnr"], data["seconds"]
        self.t = data.get("t", len(self.psnr))  # steps taken (more than values when backtracking undid some)
        return True

    def key(self) -> str:
        return json.dumps(self.config if isinstance(self.config, dict) else self.config.to_dict(), sort_keys=True)


class ReferenceLane(Lane):
    def __init__(self, name: str, task, lipschitz: float, budget: int, chunk: int, device: torch.device) -> None:
        super().__init__()
        self.name, self.budget, self.chunk, self.device = name, budget, chunk, device
        self.ref = ReferenceRun(task, lipschitz=lipschitz, device=device.type, measure=True)
        self.config = {"configuration": "authors (benchmarks/reference.py)", "lipschitz": lipschitz}

    def advance(self) -> None:
        for _ in range(min(self.chunk, self.budget - len(self.psnr))):
            sync(self.device)
            t = time.perf_counter()
            values = self.ref.step()  # ends with a host copy: synchronous
            self.seconds.append(time.perf_counter() - t)
            self.psnr.append(values["psnr"])

    def modules(self):
        return self.ref.net, self.ref.optimizer


class LoopLane(Lane):
    """``engine.run`` with ``measure_every_step``, stepped here so that a lane can be checkpointed and resumed.

    The engine's ``build``, ``Stepper`` and ``Recorder``, without snapshots: tests/test_benchmarks.py checks that
    its PSNR curve is ``run``'s, across a resume too. The DIP tricks' state (input noise, output average,
    backtracking's copy) is not checkpointed.
    """

    def __init__(self, name: str, task, config: RunConfig, budget: int, chunk: int, device: torch.device) -> None:
        super().__init__()
        self.name, self.budget, self.chunk, self.device, self.task = name, budget, chunk, device, task
        self.config = replace(config, measure_every_step=True)
        resolved = autotune.resolve(task, self.config)  # as ``run``: conv_algo="auto" → this machine's path
        self.state = build(task, resolved)
        self.stepper = Stepper(self.state, resolved, task)
        self.recorder = Recorder(task, resolved, None, Meter(task, self.state.device))
        self.t = 0  # steps taken (a step undone by backtracking has no PSNR)

    def advance(self) -> None:
        for _ in range(min(self.chunk, self.budget - len(self.psnr))):
            self.t += 1
            last = self.t == self.budget
            sync(self.device)
            start = time.perf_counter()
            stepped = self.stepper(self.t, last)
            if stepped is None:  # backtracking undid the step: no values for it, as in ``run``
                continue
            self.recorder.record(self.t, *stepped)
            self.recorder.flush(True)  # fetches this step's values: synchronous
            sync(self.device)
            self.seconds.append(time.perf_counter() - start)
            self.psnr += [p for _, p in self.recorder.take()["step_psnrs"]]
            if self.t % self.config.every == 0 or self.t == 1 or last:
                self.stepper.checkpoint()  # backtracking's copy of the weights, where ``run`` snapshots
            if last:
                self.budget = len(self.psnr)  # fewer values than steps when backtracking undid some
                break

    def modules(self):
        return self.state.net, self.state.optimizer


class EngineLane(Lane):
    def __init__(self, name: str, task, config: RunConfig, budget: int, device: torch.device) -> None:
        super().__init__()
        self.name, self.budget = name, budget
        self.config = replace(config, iterations=min(budget, MAX_ITERATIONS), measure_every_step=True)
        self.clock = StepClock(device)
        self.gen = run(task, self.config, cancel=self.clock.mark)

    def advance(self) -> None:
        self.clock.reset()
        self.clock.mark()
        snap = next(self.gen)  # runs up to the next snapshot (config.every steps, or 1 at the start)
        self.clock.mark()  # the snapshot's own cost, charged to its step
        deltas = self.clock.deltas()
        steps = deltas[:-1]
        if steps:
            steps[-1] += deltas[-1]
        self.seconds += steps
        self.psnr += [p for _, p in snap.step_psnrs]
        if snap.done:
            self.budget = len(self.psnr)  # finished (or stopped early on a non-finite loss)

    def close(self) -> None:
        self.gen.close()


def lanes_json(lanes: list[Lane], target: float, window: int) -> dict:
    """The lanes' summaries, per-step PSNR and step seconds, as ``--json --curves`` writes them."""
    return {
        "lanes": {lane.name: summarise(lane, target, window) for lane in lanes},
        "curves": {lane.name: [round(v, 3) for v in lane.psnr] for lane in lanes},
        "step_seconds": {lane.name: [round(v, 4) for v in lane.seconds] for lane in lanes},
    }


def summarise(lane: Lane, target: float, window: int) -> dict:
    """A lane's configuration, then its crossing step and time, peaks, final level and decay (``target_summary``)."""
    config = lane.config if isinstance(lane.config, dict) else config_summary(lane.config)
    return {"config": config, **target_summary(lane.psnr, lane.seconds, target, window)}


def benchmark(
    size: int = 256,
    sigma: float = 25.0,
    seed: int = 0,
    steps: int = 600,
    ref_steps: int = 450,
    ref_controlled_steps: int = 700,
    long_steps: int = 0,
    lanes: tuple[str, ...] = ("reference_vanilla", "reference_controlled", "preset"),
    preset_name: str = "auto",
    preset_lipschitz: float | None = None,
    controlled_lipschitz: float = 1.4,
    target: float = 30.0,
    window: int = 25,
    chunk: int = 10,
    device: str = "auto",
    image: str | None = None,
    curves: bool = False,
    overrides: dict | None = None,
    merge: list[str] | None = None,
    partial: str | None = None,
    checkpoint: str | None = None,
) -> dict:
    """Run the lanes interleaved and return the result dict (see the module docstring)."""
    dev = pick_device(device)
    name = preset_name if preset_name != "auto" else ("cuda" if dev.type == "cuda" else "cpu")
    base = preset(name, device=dev.type, seed=seed, every=chunk, **(overrides or {}))
    if preset_lipschitz is not None:
        base = replace(base, lipschitz=preset_lipschitz)

    def task():
        return denoise_task(size, sigma, seed, image)

    def engine_lane(name: str, cfg: RunConfig, budget: int) -> Lane:
        if checkpoint:
            return LoopLane(name, task(), cfg, budget, chunk, dev)
        return EngineLane(name, task(), cfg, budget, dev)

    made: list[Lane] = []
    for lane in lanes:
        if lane == "reference_vanilla":
            made.append(ReferenceLane(lane, task(), 0.0, ref_steps, chunk, dev))
        elif lane == "reference_controlled":
            made.append(ReferenceLane(lane, task(), 1.4, ref_controlled_steps, chunk, dev))
        elif lane == "preset":
            made.append(engine_lane(lane, base, steps))
        elif lane == "preset_vanilla":
            made.append(engine_lane(lane, replace(base, lipschitz=0.0), long_steps or steps))
        elif lane == "preset_controlled":
            cfg = replace(base, lipschitz=controlled_lipschitz)
            made.append(engine_lane(lane, cfg, long_steps or steps))
        elif lane == "same_controlled":
            cfg = replace(base, width=128, depth=5, lr=1e-3, lipschitz=1.4, upsample="bilinear", gaussian_sigma=None)
            made.append(engine_lane(lane, cfg, ref_controlled_steps))
        else:
            raise ValueError(f"unknown lane {lane!r}")
    folder = Path(checkpoint) if checkpoint else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        for lane in made:
            if lane.restore(folder):
                print(f"{lane.name}: resumed at step {len(lane.psnr)}", file=sys.stderr)
    started = time.perf_counter()
    try:
        while not all(lane.done for lane in made):
            for lane in made:
                if not lane.done:
                    lane.advance()
                    if folder:
                        lane.save(folder)
            if partial:  # survives a kill: the lanes so far, in the --curves format (usable by --merge)
                snapshot = {"size": size, "sigma": sigma, "seed": seed, "machine": machine(dev), "partial": True}
                Path(partial).write_text(json.dumps({**snapshot, **lanes_json(made, target, window)}))
    finally:
        for lane in made:
            lane.close()
    done = lanes_json(made, target, window)
    summary, curves_of, seconds_of = done["lanes"], done["curves"], done["step_seconds"]
    for path in merge or ():
        old = json.loads(open(path).read())
        if (old["size"], old["sigma"], old["seed"]) != (size, sigma, seed) or "curves" not in old:
            raise ValueError(f"{path}: not a --curves output for size {size}, σ {sigma:g}, seed {seed}")
        for name, values in old["curves"].items():
            if name in summary:
                continue
            lane = Lane()
            lane.name, lane.psnr, lane.seconds = name, values, old["step_seconds"][name]
            lane.config = {**old["lanes"][name]["config"], "merged_from": f"{path} ({old['machine']['date']})"}
            summary[name] = summarise(lane, target, window)
            curves_of[name], seconds_of[name] = values, old["step_seconds"][name]
    ref_c = summary.get("reference_controlled", {})
    pre = summary.get("preset", {})
    # the reference's time to the target: its first lane to get there (vanilla DIP's smoothed PSNR may
    # peak just below 30 dB on House, the controlled one's passes it)
    reached = [n for n in ("reference_vanilla", "reference_controlled") if summary.get(n, {}).get("s_to_target")]
    ref_lane = min(reached, key=lambda n: summary[n]["s_to_target"]) if reached else "reference_vanilla"
    ref = summary.get(ref_lane, {})
    result = {
        "reference_s_to_30db": ref.get("s_to_target"),
        "preset_s_to_30db": pre.get("s_to_target"),
        "speedup": ratio(ref.get("s_to_target"), pre.get("s_to_target"), 2),
        "preset_peak_psnr": pre.get("peak_psnr"),
        "reference_peak_psnr": ref_c.get("peak_psnr"),
        # extras
        "reference_lane_to_target": ref_lane if reached else None,
        "projected_speedup": ratio(ref.get("projected_s_to_target"), pre.get("projected_s_to_target"), 2),
        "device": f"{dev.type}: " + (torch.cuda.get_device_name(dev) if dev.type == "cuda" else machine(dev)["cpu"]),
        "size": size,
        "sigma": sigma,
        "seed": seed,
        "target_db": target,
        "window": window,
        "lanes": summary,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": machine(dev),
    }
    same = summary.get("same_controlled")
    if same and ref_c:
        result["same_vs_reference_peak_db"] = round(same["peak_psnr"] - ref_c["peak_psnr"], 3)
        result["same_vs_reference_peak_ma_db"] = round(same["peak_ma_psnr"] - ref_c["peak_ma_psnr"], 3)
    if curves:
        result["curves"] = curves_of
        result["step_seconds"] = seconds_of
    return result


def table(result: dict) -> str:
    lines = [
        f"device: {result['device']}   House {result['size']}², σ = {result['sigma']:g}, seed {result['seed']}; "
        f"target: {result['window']}-step moving average ≥ {result['target_db']:g} dB"
    ]
    head = f"{'lane':22s} {'steps':>6s} {'ms/step':>8s} {'→target':>8s} {'s':>8s} {'proj. s':>8s}"
    head += f" {'peak':>7s} {'@step':>6s} {'peakMA':>7s} {'finalMA':>8s}"
    lines.append(head)
    for name, s in result["lanes"].items():

        def f(v, fmt):
            return "—" if v is None else format(v, fmt)

        lines.append(
            f"{name:22s} {s['steps']:6d} {f(s['median_step_ms'], '.1f'):>8s} {f(s['steps_to_target'], 'd'):>8s} "
            f"{f(s['s_to_target'], '.1f'):>8s} {f(s['projected_s_to_target'], '.1f'):>8s} "
            f"{f(s['peak_psnr'], '.2f'):>7s} {f(s['peak_step'], 'd'):>6s} {f(s['peak_ma_psnr'], '.2f'):>7s} "
            f"{f(s['final_ma_psnr'], '.2f'):>8s}"
        )
    lines.append(
        f"speedup to {result['target_db']:g} dB: {result['speedup']} (measured), {result['projected_speedup']} "
        "(projected from median step times)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser(
        "time-to-quality",
        __doc__,
        size=256,
        seed=0,
        steps=600,
        width=None,
        lr=None,
        device="auto",
        threads=None,
        image=None,
        json=False,
    )
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
    p.add_argument("--checkpoint", help="folder: save every lane after each chunk and resume from it (CPU)")
    args = p.parse_args(argv)
    if args.size % 32 or args.size < 32:
        p.error("--size must be a positive multiple of 32")
    lanes = tuple(x for x in args.lanes.split(",") if x)
    if unknown := set(lanes) - set(LANES):
        p.error(f"unknown lane(s): {', '.join(sorted(unknown))}")
    set_threads(args.threads)
    overrides = {k: v for k, v in (("width", args.width), ("lr", args.lr)) if v is not None}
    options = {k: v for k, v in vars(args).items() if k not in ("lanes", "width", "lr", "threads", "json")}
    options["preset_name"] = options.pop("preset")
    try:
        result = benchmark(lanes=lanes, overrides=overrides, **options)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
