"""What a script calls: a run whose ``auto`` choices are made first (``autotune.resolve``, their one place), then
the engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .autotune import resolve
from .config import RunConfig
from .engine import Snapshot
from .engine import run as run_resolved
from .tasks import Task

__all__ = ["run", "run_to_end"]


def run(task: Task, config: RunConfig, cancel: Callable[[], bool] | None = None) -> Iterator[Snapshot]:
    """``engine.run`` of ``config`` with its device and convolution path chosen for this machine (``resolve``)."""
    return run_resolved(task, resolve(task, config), cancel)


def run_to_end(task: Task, config: RunConfig, cancel: Callable[[], bool] | None = None) -> list[Snapshot]:
    """All snapshots of ``run``, as a list."""
    return list(run(task, config, cancel))
