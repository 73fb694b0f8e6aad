"""Small helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from dip_core import RunConfig


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` every 50 ms until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def small(**kw) -> RunConfig:
    """A tiny fast run configuration (CPU, width 16, depth 3, power iteration), overridable."""
    base = dict(width=16, depth=3, iterations=30, every=10, lr=0.01, padding="zeros", sn_method="power", device="cpu")
    return RunConfig(**{**base, **kw})


def run_lab_in_child(queue, key: str, kwargs: dict) -> None:
    """A live_run call in another process, as ZeroGPU's worker runs it; every output goes back pickled."""
    import torch

    torch.set_num_threads(1)
    from demo.form import RunForm
    from demo.live import live_run

    try:
        for _, out in live_run(key, RunForm(**kwargs)):
            queue.put(("frame", out))
        queue.put(("end", None))
    except Exception as err:  # noqa: BLE001 - reported to the test
        queue.put(("error", repr(err)))
