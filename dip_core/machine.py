"""The CPU this process runs on: model name, core count and the SIMD flags that choose torch's kernels; and the
one allocator setting a CPU run wants (``keep_freed_memory``)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

#: glibc's mallopt parameters, and the values ``keep_freed_memory`` sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks below it come from the heap, not a fresh mmap
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory the heap keeps (at most) instead of returning it to the system
_kept: bool | None = None  # whether keep_freed_memory took effect (None: not tried yet)

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


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory a training step frees for the next step: True where it took effect.

    A step allocates and frees the same activations every time (1.5 MB each for the app's network). By default
    glibc serves such blocks by mmap and returns them at free, so every step pays the kernel to map and zero them
    again (a fifth of the step's time on a 2-core AMD EPYC, as system time); its adaptive threshold only
    sometimes learns better. With blocks below 32 MB from the heap and up to 256 MB of free heap kept, they are
    reused. Process-wide and once; Linux with glibc only; ``SPECTRAL_BIAS_LAB_MALLOC=default`` leaves malloc alone.
    """
    global _kept
    if _kept is None:
        _kept = False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            if os.environ.get("SPECTRAL_BIAS_LAB_MALLOC", "") != "default":
                try:
                    mallopt = ctypes.CDLL(None).mallopt
                except (OSError, AttributeError):
                    return _kept
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                )
    return _kept
