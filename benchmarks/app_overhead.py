"""The live run's own cost: steps per second of the app's default compare run in three modes, interleaved.

    python -m benchmarks app-overhead [--size 128] [--width 24] [--steps 600] [--rounds 4] [--modes app] [--json]

``bare``: the two networks' run generators in the app's two-thread pool, snapshots at the app's interval, nothing
else; ``data``: ``LabRun.stream()`` (the tracks, the spectra), no views; ``app``: ``LabRun`` + ``demo.frames`` +
``events.frame_outputs`` (the figures, the status line, the PNG files), as the page gets them, read at once. Each
mode's steps/s is the median over ``--rounds`` runs (the modes take turns, so a drift of the machine's speed hits
them alike). Target (issue 26): ``app`` within 10 % of ``bare``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from demo import frames
from demo.exports import FrameFiles
from demo.inputs import parse_request
from demo.live import frame_outputs
from demo.session import LabRun
from dip_core.machine import cpu

from .common import HOUSE, emit
from .options import parser
from .step import PairRunner


def lab_run(image: Path, size: int, width: int, steps: int) -> LabRun:
    """The app's default compare run of ``steps`` iterations (its request, its resolved configs)."""
    return LabRun(parse_request(str(image), iterations=steps, compare=True, max_side=size, width=width))


def bare(lab: LabRun) -> float:
    """Steps/s of the two run generators in lockstep, a thread and a torch thread each (pair-speed's ``threads``)."""
    start = time.perf_counter()
    pair = PairRunner("threads", lab.request.task, [t.config for t in lab.tracks.values()], torch.device("cpu"))
    while not all(s is None or s.done for s in pair.snaps):
        pair.advance()
    pair.close()
    return lab.iterations / (time.perf_counter() - start)


def data(lab: LabRun) -> float:
    """Steps/s of ``LabRun.stream()`` read at once, no views."""
    for _ in lab.stream():
        pass
    return lab.iterations / (lab.ended - lab.started)


def app(lab: LabRun) -> float:
    """Steps/s of the run as the page gets it: every update turned into figures, status and PNG files."""
    files, first = FrameFiles(), True
    for frame in frames.stream(lab.stream()):
        frame_outputs(frame, files, first)
        first = False
    return lab.iterations / (lab.ended - lab.started)


MODES = {"bare": bare, "data": data, "app": app}


def main(argv: list[str] | None = None) -> int:
    p = parser("app-overhead", __doc__, size=128, width=24, steps=600, image=HOUSE, json=False)
    p.add_argument("--rounds", type=int, default=4, help="runs per mode (default: %(default)s)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="(default: all three)")
    args = p.parse_args(argv)
    got: dict[str, list[float]] = {m: [] for m in args.modes}
    for _ in range(args.rounds):
        for name in args.modes:
            got[name].append(MODES[name](lab_run(Path(args.image), args.size, args.width, args.steps)))
    median = {m: statistics.median(v) for m, v in got.items()}
    result = dict(machine=str(cpu()), torch=torch.__version__, size=args.size, width=args.width, steps=args.steps)
    result["steps_per_s"] = {m: round(v, 1) for m, v in median.items()}
    result["runs"] = {m: [round(x, 1) for x in v] for m, v in got.items()}
    if "app" in median and "bare" in median:
        result["app_vs_bare"] = round(median["app"] / median["bare"], 3)
    emit(result, args.json)
    return 0
