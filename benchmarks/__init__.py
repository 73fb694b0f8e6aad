"""Benchmarks and the reproduction harness, one command: ``python -m benchmarks COMMAND`` (see ``__main__.py``)."""

import os

# On a 2-core machine shared with other processes, OpenMP's default spin-waiting makes a 2-thread step
# up to ~10× slower whenever another process holds a core (measured: benchmarks/RESULTS.md). Sleeping
# waits cost < 1 % when the machine is quiet. Takes effect only if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
