"""Step-time benchmarks: the authors' per-step cost against our engine (``speed``), and a compare run's two
networks stepped separately or stacked (``pair-speed``, benchmarks/pair_step.py), configurations alternated.

    python -m benchmarks speed [--size PX] [--steps N] [--device D] [--json]

``--steps``: timed steps per configuration (default: CPU 12, CUDA 200).

Configurations (denoising σ = 25 on House resized to PX², one process, interleaved in chunks so that
machine drift hits all of them alike; median ms per step after warm-up):

- ``reference``: the authors' step re-implemented from docs/method.md: 128 ch, reflection padding, λ = 1.4
  with an exact SVD per controlled conv every step, fp32, then the host copy, PSNR, FBC (FFTs and ring
  masks recomputed), blurriness and MLV sharpness (Python full sort) in numpy every step.
- ``ours_same``: ``dip_core.run`` with the same network (128 ch, λ = 1.4, lr 1e-3) and the same
  measurements every step (``measure_every_step``: blur/sharpness ratio and FBC in torch on the device),
  using the numeric settings of the device's preset (padding, σ method, conv algorithm, precision, graphs).
- ``ours_preset``: the preset the app and the CLI use by default on this device, as they run it.

``measure_overhead_pct`` is the engine's per-step measurement (ratio + FBC, exactly the calls ``run``
makes) timed on the same device, over the ``ours_same`` step time. ``gflops_achieved`` is the
conv/matmul FLOPs of one ``ours_same`` step (direct-convolution equivalent) over its time;
``gflops_peak`` is a large matmul in the same dtype on the same device, measured in the same rounds.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import torch

from dip_core import MAX_ITERATIONS, InputError, RunConfig, autotune, metrics, preset, run
from dip_core.stacked import run_stacked

from . import common
from .options import parser, record, set_threads
from .reference import NETWORK, ReferenceRunner

CONFIGS = ("reference", "ours_same", "ours_preset")
#: pair-speed's variant modifiers: ``stacked+bf16`` is the stacked pair in bf16.
MODIFIERS = {"eager": dict(cuda_graph=False), "bf16": dict(precision="bf16"), "channels_last": dict(channels_last=True)}


@dataclass(frozen=True)
class Options:
    """What ``benchmark`` times (``speed``); None: the device's default. ``variants``: name → ours_same's overrides."""

    size: int = 256
    steps: int | None = None
    device: str = "auto"
    chunk: int | None = None
    warmup: int | None = None
    configs: tuple[str, ...] = CONFIGS
    image: str | None = None
    ref_steps: int | None = None
    variants: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class PairOptions:
    """What ``pair_benchmark`` times (``pair-speed``); no ``variants``: the device's (``pair_variants``)."""

    device: str = "auto"
    size: int = 256
    width: int = 128
    lipschitz: float = 1.4
    variants: tuple[str, ...] = ()
    chunk: int = 50
    rounds: int = 8
    warmup: int = 150
    ref_steps: int = 0


def same_config(device: torch.device, **overrides) -> RunConfig:
    """The authors' network and learning rate with the device preset's numerics, measuring every step."""
    base = preset(common.device_preset(device), device=device.type)
    return replace(base, **NETWORK, auto_stop="off", measure_every_step=True, **overrides)


def preset_config(device: torch.device, **overrides) -> RunConfig:
    """The default preset exactly as the app/CLI build it (``preset("auto")`` on this device)."""
    return replace(preset(common.device_preset(device), device=device.type), **overrides)


class MeasureRunner:
    """Times the engine's per-step measurement (blur/sharpness ratio, FBC, PSNR) on an output of this size."""

    def __init__(self, task, device: torch.device, reps: int) -> None:
        ref_dtype = torch.float64 if device.type == "cpu" else torch.float32
        self.dtype, self.reps, self.device = ref_dtype, reps, device
        self.fbc = metrics.FrequencyBandMeter(task.observation[0].to(device, ref_dtype))
        gen = torch.Generator().manual_seed(1)
        self.out = torch.rand(task.observation.shape, generator=gen).to(device)
        self.clean = task.clean.to(device)
        self.clock = common.StepClock(device)

    def __call__(self) -> list[float]:
        self.clock.reset()
        self.clock.mark()
        with torch.no_grad():
            for _ in range(self.reps):
                metrics.ratio_t(metrics.grayscale_t(self.out[0].to(self.dtype)))
                self.fbc(self.out[0].to(self.dtype))
                metrics.psnr_t(self.out, self.clean)
                self.clock.mark()
        return self.clock.deltas()


class PairRunner:
    """One pair-speed variant: each call advances both networks by one snapshot (``chunk`` steps) and returns the
    seconds per pair-step of that chunk (synced at the snapshot, which fetches the metrics)."""

    def __init__(self, variant: str, task, configs: list[RunConfig], device: torch.device) -> None:
        kind = variant.split("+")[0]
        self.device, self.chunk, self.pool = device, configs[0].every, None
        if kind == "stacked":
            self.gens = [run_stacked(task, [autotune.resolve(task, c) for c in configs])]
        elif kind in ("separate", "threads"):
            self.gens = [run(task, c) for c in configs]
            if kind == "threads":
                self.pool = ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,))
        else:
            raise SystemExit(f"error: unknown variant {variant!r} (stacked, separate or threads)")
        self.advance()  # build the networks and take step 1

    def advance(self) -> None:
        """The next snapshot of each generator into ``snaps`` (None for one that has ended)."""
        if self.pool is not None:  # torch's thread count is process-wide: one each while the pair runs
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self.snaps = list(self.pool.map(lambda g: next(g, None), self.gens))
            torch.set_num_threads(threads)
        else:
            self.snaps = [next(g, None) for g in self.gens]

    def __call__(self) -> list[float]:
        common.sync(self.device)
        start = time.perf_counter()
        self.advance()
        common.sync(self.device)
        return [(time.perf_counter() - start) / self.chunk]

    def close(self) -> None:
        for g in self.gens:
            g.close()
        if self.pool is not None:
            self.pool.shutdown()


def make_runners(o: Options, dev: torch.device, chunk: int, ref_chunk: int) -> dict:
    """The timed configurations, each on its own House task: the reference, ours_same, ours_preset, the variants."""

    def engine(cfg: RunConfig) -> common.EngineRunner:
        cfg = replace(cfg, every=chunk, iterations=MAX_ITERATIONS)
        return common.EngineRunner(common.denoise_task(size=o.size, path=o.image), cfg, dev)

    same = same_config(dev)
    runners: dict = {}
    if "reference" in o.configs:
        runners["reference"] = ReferenceRunner(common.denoise_task(size=o.size, path=o.image), ref_chunk, dev)
    if "ours_same" in o.configs:
        runners["ours_same"] = engine(same)
    if "ours_preset" in o.configs:
        runners["ours_preset"] = engine(preset_config(dev))
    for k, v in o.variants.items():
        runners[f"variant_{k}"] = engine(replace(same, **v))
    return runners


def warm(runners: dict, warmup: int) -> None:
    """Every configuration runs at least ``warmup`` steps first (not timed)."""
    for r in runners.values():
        if isinstance(r, common.EngineRunner):
            while r.done < max(1, warmup):
                r()
        else:
            r(min(warmup, 3))  # the reference has no warm-up phase of its own


def variant(med: dict, name: str, ours: float | None, settings: dict) -> dict:
    """A variant's median ms, its ratio to ours_same and its settings."""
    ms = med.get(f"variant_{name}")
    return {"ms": common.ratio(ms, 1, 2), "vs_ours_same": common.ratio(ms, ours), **settings}


def benchmark(o: Options = Options()) -> dict:
    """Run the interleaved benchmark and return the result dict (see the module docstring)."""
    dev = common.pick_device(o.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    steps = o.steps or (200 if cuda else 12)
    chunk = o.chunk or (20 if cuda else 3)
    # CUDA: past the power iteration's 100-step warm-up and the graph capture at step 101.
    warmup = o.warmup if o.warmup is not None else (110 if cuda else 2)
    rounds = max(1, -(-steps // chunk))
    ref_chunk = max(1, -(-o.ref_steps // rounds)) if o.ref_steps else chunk
    same, pre = same_config(dev), preset_config(dev)
    runners = make_runners(o, dev, chunk, ref_chunk)
    measure = MeasureRunner(common.denoise_task(size=o.size, path=o.image), dev, reps=chunk)
    peaks: list[float] = []

    def peak() -> list[float]:  # the matmul peak in the step's dtype, measured in the same rounds (no step times)
        peaks.append(common.matmul_gflops(dev, torch.bfloat16 if same.precision == "bf16" else torch.float32))
        return []

    warm(runners, warmup)
    measure()
    times = common.interleave({**runners, "measure": measure, "peak": peak}, rounds)
    med = {k: common.median_ms(v) for k, v in times.items()}
    flops = common.step_flops(same, 3, o.size)  # House is RGB
    ours = med.get("ours_same")
    result = {
        "device": common.device_name(dev),
        "size": o.size,
        "reference_ms": med.get("reference"),
        "ours_same_ms": ours,
        "ours_preset_ms": med.get("ours_preset"),
        "speedup_same": common.ratio(med.get("reference"), ours),
        "measure_overhead_pct": None if ours is None else round(100 * med["measure"] / ours, 2),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "gflops_achieved": None if ours is None else round(flops / (ours / 1000) / 1e9, 1),
        "gflops_peak": round(max(peaks), 1) if peaks else None,
        # extras
        "speedup_preset": common.ratio(med.get("reference"), med.get("ours_preset")),
        "measure_ms": med.get("measure"),
        "step_gflop": round(flops / 1e9, 2),
        "timed_steps": {k: len(v) for k, v in times.items() if k not in ("peak",)},
        "warmup_steps": warmup,
        "chunk": chunk,
        "ours_same_config": common.config_summary(same),
        "auto_conv_path": autotune.describe(autotune.resolve(common.denoise_task(size=o.size, path=o.image), same)),
        "ours_preset_config": common.config_summary(pre),
        "variants": {f"variant_{k}": variant(med, k, ours, v) for k, v in o.variants.items()},
        "machine": common.machine(dev),
    }
    if cuda:
        result["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    for k in ("reference_ms", "ours_same_ms", "ours_preset_ms", "measure_ms"):
        if result[k] is not None:
            result[k] = round(result[k], 2)
    return result


def pair_variants(device: torch.device) -> tuple[str, ...]:
    """The variants ``pair-speed`` times by default on ``device``."""
    if device.type == "cuda":
        return ("separate", "stacked", "stacked+eager", "stacked+bf16", "stacked+channels_last", "separate+eager")
    return ("threads", "separate", "stacked")


def pair_configs(o: PairOptions, device: torch.device, variant: str) -> list[RunConfig]:
    """Vanilla and controlled, the device preset's numerics with the variant's modifiers, the same seed."""
    mods = {}
    for m in variant.split("+")[1:]:
        if m not in MODIFIERS:
            raise SystemExit(f"error: unknown modifier {m!r} (one of {', '.join(MODIFIERS)})")
        mods.update(MODIFIERS[m])
    iterations = o.warmup + (o.rounds + 2) * o.chunk
    base = preset(common.device_preset(device), device=device.type, width=o.width, iterations=iterations, lr=1e-3)
    base = replace(base, every=o.chunk, conv_algo="direct", **mods)  # grouped convs take the direct path
    return [replace(base, lipschitz=0.0), replace(base, lipschitz=o.lipschitz)]


def pair_benchmark(o: PairOptions = PairOptions()) -> dict:
    """Median pair-steps per second of each variant (and the authors' step), after ``o.warmup`` steps."""
    device = common.pick_device(o.device)
    variants = o.variants or pair_variants(device)
    runners: dict = {
        v: PairRunner(v, common.denoise_task(o.size), pair_configs(o, device, v), device) for v in variants
    }
    for _ in range(max(1, o.warmup // o.chunk)):  # warm-up chunks, not timed
        for r in runners.values():
            r()
    if o.ref_steps:
        runners["reference"] = ReferenceRunner(common.denoise_task(o.size), max(1, -(-o.ref_steps // o.rounds)), device)
    times = common.interleave(runners, o.rounds)
    keys = ("size", "width", "lipschitz", "chunk", "rounds", "warmup")
    out: dict = {k: getattr(o, k) for k in keys}
    out["ms_per_pair_step"] = {v: round(common.median_ms(times[v]), 3) for v in variants}
    out["pair_steps_per_s"] = {v: round(1000 / out["ms_per_pair_step"][v], 1) for v in variants}
    if o.ref_steps:
        ref_ms = common.median_ms(times["reference"])
        out["reference_ms_per_step"] = round(ref_ms, 2)
        out["x_authors_pair"] = {v: round(2 * ref_ms / out["ms_per_pair_step"][v], 1) for v in variants}
    out["machine"] = common.machine(device)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks speed``."""
    p = parser("speed", __doc__, size=256, steps=None, device="auto", threads=None, image=None, json=False)
    p.add_argument("--chunk", type=int, help="steps per configuration per round (default: CPU 3, CUDA 20)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: CPU 2, CUDA 110)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    p.add_argument("--ref-steps", type=int, help="timed steps of the reference (default: --steps)")
    p.add_argument("--variants", help="more configurations, ours_same with settings changed: 'NAME:key=value,...;...'")
    args = p.parse_args(argv)
    if args.size % 32 or args.size < 32:
        p.error("--size must be a positive multiple of 32")
    configs = tuple(c for c in args.configs.split(",") if c)
    if unknown := set(configs) - set(CONFIGS):
        p.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    set_threads(args.threads)
    try:
        variants = dict(common.parse_variant(v) for v in filter(None, (args.variants or "").split(";")))
    except ValueError as err:
        p.error(str(err))
    try:
        result = benchmark(record(Options, args, configs=configs, variants=variants))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    common.emit(result, args.json)
    return 0
