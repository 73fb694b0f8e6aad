"""dip_core: the Deep Image Prior with measured and controlled spectral bias (Shi et al., IJCV 2022)."""

from .api import resolve, run, run_to_end
from .config import PRESETS, RunConfig, preset
from .engine import Snapshot
from .errors import InputError
from .tasks import PAPER_LIPSCHITZ, TASKS, Task, make_task, observed_task

__all__ = [
    "PAPER_LIPSCHITZ",
    "PRESETS",
    "TASKS",
    "InputError",
    "RunConfig",
    "Snapshot",
    "Task",
    "make_task",
    "observed_task",
    "preset",
    "resolve",
    "run",
    "run_to_end",
]
