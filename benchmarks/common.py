"""Shared pieces of the benchmarks: the House task, per-step timing, machine facts, settings, FLOPs and peak GFLOP/s."""

from __future__ import annotations

import datetime as _dt
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from dip_core import RunConfig, Task, engine, make_task, resolve, resolve_device
from dip_core import machine as dip_machine
from dip_core.io import load_image
from dip_core.nets import Decoder, fourier_input

ROOT = Path(__file__).resolve().parent.parent
HOUSE = ROOT / "assets" / "house256.png"


def house(size: int = 256, path: str | os.PathLike | None = None) -> np.ndarray:
    """The House image (or ``path``) resized to size × size (bicubic), H×W×3 float32 in [0, 1]."""
    img = load_image(path or HOUSE)[0]
    if img.shape[:2] != (size, size):
        u8 = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        pil = Image.fromarray(u8[:, :, 0] if u8.shape[2] == 1 else u8).resize((size, size), Image.BICUBIC)
        img = np.asarray(pil, dtype=np.float32) / 255
        img = img[:, :, None] if img.ndim == 2 else img
    return img


def denoise_task(size: int = 256, sigma: float = 25.0, seed: int = 0, path=None) -> Task:
    """Denoising σ on House at size² (noise seeded)."""
    return make_task("denoise", house(size, path), sigma, seed=seed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Timestamps after every step, without a host sync on CUDA (events), read after each chunk."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list = []

    def mark(self, _step: int | None = None) -> bool:
        """A timestamp now (the engine's ``on_step`` hook; False also lets it serve as a ``cancel`` callback)."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        return False

    def deltas(self) -> list[float]:
        """Seconds between consecutive marks since the last call (syncs on CUDA)."""
        marks, self.marks = self.marks, self.marks[-1:]
        if len(marks) < 2:
            return []
        if self.device.type == "cuda":
            marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(marks, marks[1:])]
        return [b - a for a, b in zip(marks, marks[1:])]

    def reset(self) -> None:
        self.marks = []


class EngineRunner:
    """``dip_core.engine.run`` advanced one snapshot at a time; its ``on_step`` hook timestamps every step."""

    def __init__(self, task: Task, config: RunConfig, device: torch.device) -> None:
        self.clock, self.config = StepClock(device), config
        self.gen = engine.run(task, resolve(task, config), on_step=self.clock.mark)
        self.snap: engine.Snapshot | None = None
        self.snapshot_s = 0.0  # the last snapshot's own cost (measurements and the image)

    @property
    def done(self) -> int:
        """Steps run so far (at the last snapshot)."""
        return self.snap.iter if self.snap is not None else 0

    def __call__(self) -> list[float]:
        """Run to the next snapshot; the seconds of each step since the last one."""
        self.clock.reset()
        self.clock.mark()  # the chunk starts right after the previous snapshot was yielded
        self.snap = next(self.gen)
        self.clock.mark()
        *steps, self.snapshot_s = self.clock.deltas()
        return steps

    def close(self) -> None:
        self.gen.close()


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """``a / b`` rounded, or None where either is missing (or ``b`` is 0)."""
    return None if a is None or b is None or b == 0 else round(a / b, digits)


def fmt(v: object, digits: int = 2) -> str:
    """A table cell: a float to ``digits`` places, a dash for None, anything else as it prints."""
    return "—" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def md_table(heads: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines: the header, its rule, then one line per row (each cell as it prints)."""
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    return out + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def median_ms(values: list[float]) -> float | None:
    return 1000 * statistics.median(values) if values else None


def peak_rss_mb() -> float:
    """The process's peak resident memory (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Achieved GFLOP/s of a large square matmul in ``dtype`` on ``device`` (the machine's practical peak), in TF32
    where cuDNN may run the convolutions in it."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    times = []
    try:
        for _ in range(4):  # the first call warms up, untimed
            sync(device)
            t = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / min(times[1:]) / 1e9


def step_flops(config: RunConfig, channels: int, size: int) -> float:
    """Conv/matmul FLOPs of one training step (forward + backward) of ``config``'s decoder at size².

    Counted with torch's FlopCounterMode on the meta device (no compute); the Winograd path is counted
    as the direct convolution it replaces, so GFLOP/s figures are direct-convolution equivalents.
    """
    net = Decoder(channels, width=config.width, depth=config.depth, upsample=config.upsample, padding=config.padding)
    net = net.to("meta")
    z = fourier_input(size // net.multiple, size // net.multiple, net.in_channels).to("meta")
    counter = FlopCounterMode(display=False)
    with counter:
        net(z).square().mean().backward()
    return float(counter.get_total_flops())


def machine(device: torch.device) -> dict:
    """What ran the benchmark: CPU model and flags that matter, threads, GPU, torch, load, date."""
    cpu = dip_machine.cpu()
    info = dict(cpu=cpu.model, cpu_count=cpu.cores, simd=list(cpu.simd), torch_threads=torch.get_num_threads())
    info["torch"] = torch.__version__
    info["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_settings(body: str, extra: dict[str, type] | None = None) -> dict:
    """``"padding=zeros,channels_last=1"`` → RunConfig overrides, each value of its field's type (``extra``: other
    keys the caller takes, with their types)."""
    out: dict = {}
    defaults, extra = RunConfig(), extra or {}
    for pair in filter(None, body.split(",")):
        key, _, raw = pair.partition("=")
        kind = extra.get(key) or (type(getattr(defaults, key)) if key in RunConfig.__dataclass_fields__ else None)
        if kind is None:
            raise ValueError(f"unknown setting {key!r}")
        if kind is bool:
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        else:
            out[key] = kind(raw) if kind in (int, float) else raw
    return out


def parse_variant(spec: str, extra: dict[str, type] | None = None) -> tuple[str, dict]:
    """``NAME:key=value,...``, ``key=value,...`` (named by itself) or ``NAME`` → (name, its settings)."""
    name, colon, body = spec.partition(":")
    if not colon and "=" in name:
        name, body = spec, spec
    try:
        return name.strip(), parse_settings(body, extra)
    except ValueError as err:
        raise ValueError(f"variant {name!r}: {err}") from None


def config_summary(config: RunConfig) -> dict:
    """The settings of ``config`` a benchmark's result names."""
    keys = ("width", "depth", "lr", "lipschitz", "padding", "sn_method", "power_iters", "conv_algo", "precision")
    keys += ("channels_last", "cuda_graph", "upsample", "every", "measure_every_step")
    return {k: getattr(config, k) for k in keys}


def pick_device(name: str) -> torch.device:
    return resolve_device(name)


def device_preset(device: torch.device) -> str:
    """The preset made for ``device``: ``cuda`` on a GPU, else ``cpu``."""
    return "cuda" if device.type == "cuda" else "cpu"


def device_name(device: torch.device) -> str:
    """``cpu: MODEL`` or ``cuda: GPU NAME``, as results name the device."""
    return f"{device.type}: " + (
        torch.cuda.get_device_name(device) if device.type == "cuda" else dip_machine.cpu().model
    )


def interleave(runners: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, list[float]]:
    """Call each runner once per round, alternating, collect the step times each returns, then close each runner
    that has a ``close``."""
    out: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            out[name] += fn()
    for fn in runners.values():
        getattr(fn, "close", lambda: None)()
    return out


def emit(result: dict, as_json: bool) -> None:
    """Print ``result``: one JSON line, or indented without its ``machine``."""
    print(json.dumps(result) if as_json else json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
