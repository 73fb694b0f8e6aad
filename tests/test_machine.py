"""dip_core.machine: the allocator setting a CPU run makes, and its opt-out."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from dip_core import machine

glibc = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="mallopt is glibc's"
)

PROBE = """
import numpy as np
from dip_core import machine
from dip_core import preset
from dip_core.engine import build
from dip_core.tasks import make_task
print(machine._kept)
task = make_task("denoise", np.random.default_rng(0).random((32, 32, 3)), 25, seed=0)
build(task, preset("cpu", width=4, conv_algo="direct", device="cpu"))
print(machine._kept)
"""


def probe(env: dict[str, str]) -> list[str]:
    """What a fresh process's keep_freed_memory state is before and after building a CPU run."""
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@glibc
def test_a_cpu_run_keeps_freed_memory():
    """Building a CPU run sets glibc's thresholds once (before it, nothing was tried)."""
    env = {k: v for k, v in os.environ.items() if k != "SPECTRAL_BIAS_LAB_MALLOC"}
    assert probe(env) == ["None", "True"]


@glibc
def test_the_allocator_can_be_left_alone():
    env = {**os.environ, "SPECTRAL_BIAS_LAB_MALLOC": "default"}
    assert probe(env) == ["None", "False"]


def test_keep_freed_memory_is_idempotent():
    first = machine.keep_freed_memory()
    assert machine.keep_freed_memory() is first
