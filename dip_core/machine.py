"""The CPU this process runs on: model name, core count and the SIMD flags that choose torch's kernels."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: The CPU flags that decide which vectorised kernels torch and oneDNN can use (AVX2, AVX-512, bf16, AMX).
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CPU:
    """One CPU description: model name, logical cores, and which of ``SIMD_FLAGS`` it has."""

    model: str
    cores: int
    simd: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.model}, {self.cores} cores"


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in /proc/cpuinfo (None where there is no such file or line)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """Every flag /proc/cpuinfo lists for the first CPU (empty where there is none)."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu() -> CPU:
    """This machine's CPU: model, ``os.cpu_count()`` cores and the ``SIMD_FLAGS`` it has, in that order."""
    flags = cpu_flags()
    return CPU(cpu_model(), os.cpu_count() or 1, tuple(f for f in SIMD_FLAGS if f in flags))
