"""Step-time benchmark: the authors' per-step cost against our engine, configurations alternated in one process.

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

import json
import sys
from dataclasses import replace

import torch

from dip_core import MAX_ITERATIONS, RunConfig, autotune, metrics, preset
from dip_core.errors import InputError

from .common import (
    EngineRunner,
    StepClock,
    config_summary,
    denoise_task,
    interleave,
    machine,
    matmul_gflops,
    median_ms,
    parse_settings,
    peak_rss_mb,
    pick_device,
    ratio,
    step_flops,
    sync,
)
from .options import parser, set_threads
from .reference import ReferenceRun

CONFIGS = ("reference", "ours_same", "ours_preset")


def device_preset(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


def same_config(device: torch.device, **overrides) -> RunConfig:
    """The authors' network and learning rate with the device preset's numerics, measuring every step."""
    base = preset(device_preset(device), device=device.type)
    return replace(
        base,
        width=128,
        depth=5,
        upsample="bilinear",
        gaussian_sigma=None,
        lipschitz=1.4,
        lr=1e-3,
        auto_stop="off",
        measure_every_step=True,
        **overrides,
    )


def preset_config(device: torch.device, **overrides) -> RunConfig:
    """The default preset exactly as the app/CLI build it (``preset("auto")`` on this device)."""
    return replace(preset(device_preset(device), device=device.type), **overrides)


class ReferenceRunner:
    """The reference loop, ``chunk`` steps per call, each step timed to its end (host sync included)."""

    def __init__(self, task, chunk: int, device: torch.device) -> None:
        self.ref = ReferenceRun(task, lipschitz=1.4, device=device.type, measure=True)
        self.chunk, self.device = chunk, device
        self.clock = StepClock(device)

    def __call__(self) -> list[float]:
        self.clock.reset()
        sync(self.device)
        self.clock.mark()
        for _ in range(self.chunk):
            self.ref.step()
            self.clock.mark()
        return self.clock.deltas()

    def close(self) -> None:
        pass


class MeasureRunner:
    """Times the engine's per-step measurement (blur/sharpness ratio, FBC, PSNR) on an output of this size."""

    def __init__(self, task, device: torch.device, reps: int) -> None:
        ref_dtype = torch.float64 if device.type == "cpu" else torch.float32
        self.dtype, self.reps, self.device = ref_dtype, reps, device
        self.fbc = metrics.FrequencyBandMeter(task.observation[0].to(device, ref_dtype))
        gen = torch.Generator().manual_seed(1)
        self.out = torch.rand(task.observation.shape, generator=gen).to(device)
        self.clean = task.clean.to(device)
        self.clock = StepClock(device)

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

    def close(self) -> None:
        pass


def parse_variants(spec: str | None) -> dict[str, dict]:
    """``"zeros:padding=zeros;bf16:precision=bf16,channels_last=1"`` → {name: RunConfig overrides}."""
    out: dict[str, dict] = {}
    for item in filter(None, (spec or "").split(";")):
        name, _, body = item.partition(":")
        try:
            out[name.strip()] = parse_settings(body)
        except ValueError as err:
            raise ValueError(f"variant {name!r}: {err}") from None
    return out


def make_runners(
    dev: torch.device, size: int, image: str | None, chunk: int, ref_chunk: int, configs: tuple, variants: dict
) -> dict:
    """The timed configurations, each on its own House task: the reference, ours_same, ours_preset, the variants."""

    def engine(cfg: RunConfig) -> EngineRunner:
        cfg = replace(cfg, every=chunk, iterations=MAX_ITERATIONS)
        return EngineRunner(denoise_task(size=size, path=image), cfg, dev)

    same, pre = same_config(dev), preset_config(dev)
    runners: dict = {}
    if "reference" in configs:
        runners["reference"] = ReferenceRunner(denoise_task(size=size, path=image), ref_chunk, dev)
    if "ours_same" in configs:
        runners["ours_same"] = engine(same)
    if "ours_preset" in configs:
        runners["ours_preset"] = engine(pre)
    for k, v in variants.items():
        runners[f"variant_{k}"] = engine(replace(same, **v))
    return runners


def warm(runners: dict, warmup: int) -> None:
    """Every configuration runs at least ``warmup`` steps first (not timed)."""
    for r in runners.values():
        if isinstance(r, EngineRunner):
            while r.done < max(1, warmup):
                r()
        else:
            for _ in range(min(warmup, 3)):  # the reference has no warm-up phase of its own
                r.ref.step()


def peak_timer(dev: torch.device, dtype: torch.dtype, peaks: list[float]):  # noqa: ANN201 - a runner
    """A runner that measures the matmul peak in ``dtype`` into ``peaks`` (no step times)."""

    def peak() -> list[float]:
        cuda = dev.type == "cuda"
        if cuda:  # the convs use TF32 when cuDNN allows it: measure the matmul the same way
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
        try:
            peaks.append(matmul_gflops(dev, dtype))
        finally:
            if cuda:
                torch.backends.cuda.matmul.allow_tf32 = old
        return []

    return peak


def variant(med: dict, name: str, ours: float | None, settings: dict) -> dict:
    """A variant's median ms, its ratio to ours_same and its settings."""
    ms = med.get(f"variant_{name}")
    return {"ms": ratio(ms, 1, 2), "vs_ours_same": ratio(ms, ours), **settings}


def benchmark(
    size: int = 256,
    steps: int | None = None,
    device: str = "auto",
    chunk: int | None = None,
    warmup: int | None = None,
    configs: tuple[str, ...] = CONFIGS,
    image: str | None = None,
    ref_steps: int | None = None,
    variants: dict[str, dict] | None = None,
) -> dict:
    """Run the interleaved benchmark and return the result dict (see the module docstring).

    ``variants``: extra engine configurations, each ``ours_same`` with some settings changed, timed in
    the same rounds (to price each lever on this device).
    """
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    steps = steps or (200 if cuda else 12)
    chunk = chunk or (20 if cuda else 3)
    # CUDA: past the power iteration's 100-step warm-up and the graph capture at step 101.
    warmup = warmup if warmup is not None else (110 if cuda else 2)
    rounds = max(1, -(-steps // chunk))
    ref_chunk = max(1, -(-ref_steps // rounds)) if ref_steps else chunk
    variants = variants or {}
    same, pre = same_config(dev), preset_config(dev)
    runners = make_runners(dev, size, image, chunk, ref_chunk, configs, variants)
    measure = MeasureRunner(denoise_task(size=size, path=image), dev, reps=chunk)
    peaks: list[float] = []
    peak = peak_timer(dev, torch.bfloat16 if same.precision == "bf16" else torch.float32, peaks)
    warm(runners, warmup)
    measure()
    times = interleave({**runners, "measure": measure, "peak": peak}, rounds)
    for r in runners.values():
        r.close()
    med = {k: median_ms(v) for k, v in times.items()}
    flops = step_flops(same, 3, size)  # House is RGB
    ours = med.get("ours_same")
    result = {
        "device": f"{dev.type}: " + (torch.cuda.get_device_name(dev) if cuda else machine(dev)["cpu"]),
        "size": size,
        "reference_ms": med.get("reference"),
        "ours_same_ms": ours,
        "ours_preset_ms": med.get("ours_preset"),
        "speedup_same": ratio(med.get("reference"), ours),
        "measure_overhead_pct": None if ours is None else round(100 * med["measure"] / ours, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "gflops_achieved": None if ours is None else round(flops / (ours / 1000) / 1e9, 1),
        "gflops_peak": round(max(peaks), 1) if peaks else None,
        # extras
        "speedup_preset": ratio(med.get("reference"), med.get("ours_preset")),
        "measure_ms": med.get("measure"),
        "step_gflop": round(flops / 1e9, 2),
        "timed_steps": {k: len(v) for k, v in times.items() if k not in ("peak",)},
        "warmup_steps": warmup,
        "chunk": chunk,
        "ours_same_config": config_summary(same),
        "auto_conv_path": autotune.describe(autotune.resolve(denoise_task(size=size, path=image), same)),
        "ours_preset_config": config_summary(pre),
        "variants": {f"variant_{k}": variant(med, k, ours, v) for k, v in variants.items()},
        "machine": machine(dev),
    }
    if cuda:
        result["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    for k in ("reference_ms", "ours_same_ms", "ours_preset_ms", "measure_ms"):
        if result[k] is not None:
            result[k] = round(result[k], 2)
    return result


def table(result: dict) -> str:
    """A small human-readable table of the result."""
    rows = [
        ("reference (authors' step)", result["reference_ms"], 1.0 if result["reference_ms"] else None),
        ("ours_same (same net + metrics)", result["ours_same_ms"], result["speedup_same"]),
        ("ours_preset (default preset)", result["ours_preset_ms"], result["speedup_preset"]),
    ]
    lines = [f"device: {result['device']}   size: {result['size']}²   threads: {result['machine']['torch_threads']}"]
    lines.append(f"{'configuration':34s} {'ms/step':>10s} {'steps/s':>9s} {'speedup':>8s}")
    for name, ms, sp in rows:
        if ms is None:
            continue
        lines.append(f"{name:34s} {ms:10.1f} {1000 / ms:9.2f} {'' if sp is None else f'{sp:.2f}x':>8s}")
    for name, v in result.get("variants", {}).items():
        if v["ms"] is not None:
            sp = "" if v["vs_ours_same"] is None else f"{v['vs_ours_same']:.2f}x same"
            lines.append(f"{name:34s} {v['ms']:10.1f} {1000 / v['ms']:9.2f} {sp:>8s}")
    lines.append(
        f"measurement overhead {result['measure_overhead_pct']} %   peak RSS {result['peak_rss_mb']} MB   "
        f"GFLOP/s achieved {result['gflops_achieved']} of peak {result['gflops_peak']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
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
        variants = parse_variants(args.variants)
    except ValueError as err:
        p.error(str(err))
    try:
        result = benchmark(
            args.size, args.steps, args.device, args.chunk, args.warmup, configs, args.image, args.ref_steps, variants
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else table(result))
    return 0
