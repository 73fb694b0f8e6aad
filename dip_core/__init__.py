"""dip_core: the Deep Image Prior with measured and controlled spectral bias (Shi et al., IJCV 2022)."""

from .api import run, run_to_end
from .autotune import preset, resolve, resolve_device
from .baselines import Baseline
from .config import MAX_ITERATIONS, PRESETS, RunConfig
from .engine import Snapshot
from .errors import InputError
from .tasks import PAPER_LIPSCHITZ, TASKS, Task, baseline, make_task, observed_task, to_image

__all__ = [
    "MAX_ITERATIONS",
    "PAPER_LIPSCHITZ",
    "PRESETS",
    "TASKS",
    "Baseline",
    "InputError",
    "RunConfig",
    "Snapshot",
    "Task",
    "baseline",
    "make_task",
    "observed_task",
    "preset",
    "resolve",
    "resolve_device",
    "run",
    "run_to_end",
    "to_image",
]
