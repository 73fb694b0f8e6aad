"""Every ``auto`` choice, made here and nowhere else: the preset (``preset_name``, ``preset``), the device
(``resolve_device``) and the convolution path; ``resolve`` makes a config's, and the engine refuses one that still
says ``auto``.

``conv_algo="auto"``: the fastest CPU convolution path for a run's network, timed on this machine, then cached.
Which path wins depends on the CPU: NNPACK's Winograd beat oneDNN's direct convolution on an AMD EPYC (AVX2)
and lost to it on an Intel Xeon with AVX-512 (benchmarks/RESULTS.md). So the first run of a network shape
times a few steps of each candidate, interleaved, and keeps the fastest: per process in memory and across
processes in a JSON file (``SPECTRAL_BIAS_LAB_CACHE``, else ``~/.cache/spectral-bias-lab/conv_paths.json``).
The candidates are all fp32 (bf16 is an explicit option: its curve was not shown to match fp32 closely enough).
The same machine keeps its choice, so the same seed still gives the same curve there.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from .bound import auto_control
from .config import MAX_ITERATIONS, PRESET_NAMES, PRESETS, RunConfig, check_device
from .engine import run
from .errors import InputError
from .machine import cpu_model
from .tasks import Task

#: The paths ``auto`` chooses from: name → the RunConfig settings that select it.
CANDIDATES: dict[str, dict] = {
    "direct": dict(conv_algo="direct", channels_last=False),
    "winograd": dict(conv_algo="winograd", channels_last=False),
    "direct+channels_last": dict(conv_algo="direct", channels_last=True),
}
ROUNDS = 3  # interleaved chunks per candidate, after one untimed chunk (primitive creation, first allocations)
CHUNK = 4  # steps per chunk; the CHUNK − 1 gaps between its steps are timed: 3 × 3 = 9 timed steps per candidate
_memory: dict[str, str] = {}
_lock = threading.Lock()  # one measurement per shape per process: a second thread waits for it, then reuses it


def cache_path() -> Path:
    """The JSON file that keeps the choices across processes."""
    env = os.environ.get("SPECTRAL_BIAS_LAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spectral-bias-lab" / "conv_paths.json"


def cache_key(task: Task, config: RunConfig) -> str:
    """What the fastest path depends on: the machine, torch's kernels and threads, and the network's shape
    (image area in half-octave buckets, so that nearby sizes share one measurement)."""
    h, w = task.out_size
    area = round(2 * math.log2(max(1, h * w))) / 2
    parts = [
        cpu_model(),
        torch.__version__,
        torch.backends.cpu.get_cpu_capability(),
        os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        f"threads={torch.get_num_threads()}",
        f"c={task.channels}",
        f"width={config.width}",
        f"depth={config.depth}",
        f"area=2^{area:g}",
        config.padding,
        config.precision,
    ]
    return "|".join(parts)


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if v in CANDIDATES} if isinstance(data, dict) else {}


def _write_cache(key: str, choice: str) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**_read_cache(), key: choice}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    except OSError:  # a read-only home: the choice is still kept in memory
        pass


def measure(task: Task, config: RunConfig) -> dict[str, float]:
    """Median ms per step of each candidate on ``task`` (interleaved chunks, this process's threads): 9 steps each."""
    stamps: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    gens = {}
    for name, settings in CANDIDATES.items():
        trial = replace(
            config,
            **settings,
            iterations=MAX_ITERATIONS,
            every=CHUNK,
            auto_stop="off",
            measure_every_step=False,
            device="cpu",
        )
        gens[name] = run(task, trial, cancel=_stamper(stamps[name]))
    samples: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    try:
        for gen in gens.values():  # untimed: step 1 (a snapshot of its own), then steps 2..CHUNK
            next(gen), next(gen)
        for _ in range(ROUNDS):
            for name, gen in gens.items():
                stamps[name].clear()
                next(gen)  # CHUNK steps, each stamped as it ends; the gap to the previous chunk is not timed
                marks = stamps[name]
                samples[name] += [b - a for a, b in zip(marks, marks[1:])]
    finally:
        for gen in gens.values():
            gen.close()
    return {name: 1000 * statistics.median(v) for name, v in samples.items()}


def _stamper(marks: list[float]):
    """A run's ``cancel`` callback that only records when each step ended."""

    def stop() -> bool:
        marks.append(time.perf_counter())
        return False

    return stop


def choose(task: Task, config: RunConfig) -> str:
    """The fastest candidate's name for this run's network on this machine (measured once, then cached)."""
    key = cache_key(task, config)
    with _lock:
        if key not in _memory:
            cached = _read_cache().get(key)
            if cached is None:
                times = measure(task, config)
                cached = min(times, key=times.get)
                _write_cache(key, cached)
            _memory[key] = cached
        return _memory[key]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU (the one place the device is chosen); asking for CUDA without a GPU
    is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(check_device(name))


def preset_name(name: str = "auto") -> str:
    """The preset ``name`` stands for: ``auto`` is ``cuda`` where ``resolve_device`` finds a GPU, else ``cpu``."""
    return resolve_device().type if name == "auto" else name


def preset(name: str = "auto", **overrides) -> RunConfig:
    """A RunConfig from a named preset (``auto``: ``cuda`` when a GPU is present, else ``cpu``)."""
    name = preset_name(name)
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return replace(RunConfig(), **{**PRESETS[name], **overrides})


def resolve(task: Task, config: RunConfig) -> RunConfig:
    """``config`` with every ``auto`` choice made: λ (the task's rule or best fixed bound, with a note on ``task``),
    the device (CUDA when present) and the convolution path (on CPU the fastest candidate for this network here, on
    a GPU the direct cuDNN one). ``dip_core.run`` calls it, and
    the engine refuses a config that still says ``auto``."""
    if config.lipschitz == "auto":  # the task's rule, or its best fixed λ (dip_core/bound.py), said in a note
        control, note = auto_control(task)
        config = replace(config, **control)
        if note not in task.notes:
            task.notes.append(note)
    device = resolve_device(config.device).type
    if config.device == "auto":
        config = replace(config, device=device)
    if config.conv_algo != "auto":
        return config
    if device != "cpu":
        return replace(config, conv_algo="direct")
    return replace(config, **CANDIDATES[choose(task, config)])


def describe(config: RunConfig) -> str:
    """The convolution path of a resolved config, as ``auto`` names it."""
    return next(
        (n for n, s in CANDIDATES.items() if all(getattr(config, k) == v for k, v in s.items())),
        f"{config.conv_algo}{'+channels_last' if config.channels_last else ''}",
    )
