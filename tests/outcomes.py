"""The outcome tests' thresholds and the scenarios they assert on, one fact, one place.

A test marked ``outcome`` asserts where a chaotic optimisation ends (a PSNR reached, where a stop fires, a gap to
the best). It imports its threshold from here; ``python -m benchmarks portability spread`` re-runs the same
scenarios for several seeds under other CPU code paths and checks every threshold against the worst case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from helpers import small

from dip_core import make_task, preset, run_to_end
from dip_core.autotune import CANDIDATES
from dip_core.io import load_image, resize_max_side
from dip_core.metrics import psnr
from dip_core.tasks import to_image

ROOT = Path(__file__).resolve().parent.parent

#: What each outcome test asserts, one fact, one place: the tests import their thresholds from here.
#: scenario → quantity → (comparison, threshold); a quantity of None (a stop that never fired) fails.
CLAIMS: dict[str, dict[str, tuple[str, float]]] = {
    # tests/test_engine.py::test_denoising_raises_psnr_well_above_the_observation
    "denoise_gain": {"gain_db": (">", 4.0)},
    # tests/test_engine.py::test_auto_stop_fires_and_reports_its_iteration
    "relative_stop": {"stop_iter": ("<", 600)},
    # tests/test_cli.py::test_discrepancy_auto_stop_ends_a_denoising_run_early
    "cli_discrepancy": {"stop_iter": ("<", 600), "gap_db": ("<=", 1.5)},
    # tests/test_stopping.py::test_a_real_denoising_run_stops_where_the_rule_says
    "engine_discrepancy": {"stop_iter": ("<", 1500), "gap_db": ("<=", 1.5), "overfit_db": (">", 1.5)},
    # tests/test_app_logic.py::test_noise_level_auto_stop_ends_a_denoising_run_near_its_best and
    # tests/test_app_client.py::test_noise_level_auto_stop_through_the_api (the same run)
    # (a 32 px image and a width-8 network: its PSNR curve is noisy, so the gap to the best spreads wider)
    "app_discrepancy": {"stop_iter": ("<", 1500), "gap_db": ("<=", 3.0)},
    # tests/test_app_browser.py::test_noise_level_auto_stop_in_the_browser
    "browser_discrepancy": {"stop_iter": ("<", 5000)},
}


def threshold(scenario: str, quantity: str) -> float:
    """The threshold a test asserts for ``quantity`` of ``scenario``."""
    return CLAIMS[scenario][quantity][1]


def holds(op: str, value: float | None, limit: float) -> bool:
    """Whether ``value op limit`` (None never holds)."""
    if value is None or not math.isfinite(value):
        return False
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


# ---------------------------------------------------------------------------------------------- scenarios


def _house(side: int, crop: int | None = None, png: bool = True) -> np.ndarray:
    """House resized to ``side`` (as the tests' fixtures), optionally cropped, 8-bit quantised as a saved PNG is."""
    img = resize_max_side(load_image(ROOT / "assets" / "house256.png")[0], side)[0]
    if crop:
        img = img[:crop, :crop]
    return np.round(np.clip(img, 0, 1) * 255).astype(np.float32) / 255 if png else img


def denoise_gain(seed: int) -> dict:
    clean = _house(64, png=False)
    task = make_task("denoise", clean, 25, seed=seed)
    snaps = run_to_end(task, small(width=32, depth=4, iterations=300, every=25, lr=0.01, seed=seed))
    return {"gain_db": max(s.psnr for s in snaps) - psnr(to_image(task.observation), clean)}


def relative_stop(seed: int) -> dict:
    task = make_task("denoise", _house(64, png=False), 25, seed=seed)
    last = run_to_end(task, small(iterations=600, every=50, auto_stop="relative", seed=seed))[-1]
    return {"stop_iter": last.stop_iter}


def over_paths(measure_one: Callable[[dict], dict]) -> dict:
    """A preset-based scenario under each convolution path ``conv_algo="auto"`` can pick (another CPU picks
    another one): path name → its quantities."""
    return {"paths": {name: measure_one(settings) for name, settings in CANDIDATES.items()}}


def cli_discrepancy(seed: int) -> dict:
    task = make_task("denoise", _house(64), 25, seed=seed)

    def one(path: dict) -> dict:
        settings = dict(lipschitz=0.0, width=16, lr=0.01, iterations=600, every=25, auto_stop="discrepancy", seed=seed)
        cfg = preset("cpu", device="cpu", **settings, **path)
        snaps = run_to_end(task, cfg)
        return {"stop_iter": snaps[-1].stop_iter, "gap_db": max(s.psnr for s in snaps) - snaps[-1].psnr}

    return over_paths(one)


def engine_discrepancy(seed: int) -> dict:
    task = make_task("denoise", _house(64, png=False), 25, seed=seed)
    last = run_to_end(task, small(iterations=1500, every=25, auto_stop="discrepancy", seed=seed))[-1]
    going = run_to_end(task, small(iterations=600, every=25, seed=seed))
    return {
        "stop_iter": last.stop_iter,
        "gap_db": max(s.psnr for s in going) - last.psnr,
        "overfit_db": last.psnr - going[-1].psnr,
    }


def _app_run(image: np.ndarray, seed: int, iterations: int, **kw) -> dict:
    """One run through the app's request parser (the /run endpoint's settings), as the app tests make it."""
    from demo.inputs import parse_request  # the app only where a scenario needs it

    req = parse_request(image, iterations=iterations, auto_stop="discrepancy", compare=False, seed=seed, **kw)

    def one(path: dict) -> dict:
        last = run_to_end(req.task, replace(req.configs["controlled"], **path))[-1]
        return {"stop_iter": last.stop_iter, "gap_db": last.best_psnr - last.psnr}

    return over_paths(one)


#: The app scenarios' λ: the one their spread was measured with (the app's CPU default became λ = 1 later, so the
#: tests set this one explicitly)
APP_LAMBDA = 1.4


def app_discrepancy(seed: int) -> dict:
    return _app_run(_house(64, crop=32), seed, 1500, max_side=32, width=8, lr=0.01, lipschitz=APP_LAMBDA)


def browser_discrepancy(seed: int) -> dict:
    # the browser test runs after the upload test: its 48×48 upload, width 8, the app's default lr
    return _app_run(_house(64, crop=48), seed, 5000, width=8, lipschitz=APP_LAMBDA)


SCENARIOS: dict[str, Callable[[int], dict]] = {
    f.__name__: f
    for f in (denoise_gain, relative_stop, cli_discrepancy, engine_discrepancy, app_discrepancy, browser_discrepancy)
}
assert set(SCENARIOS) == set(CLAIMS)
