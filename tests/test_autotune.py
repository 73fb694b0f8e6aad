"""conv_algo="auto": the CPU preset times its convolution paths on this machine once, then keeps the choice."""

from __future__ import annotations

import json
import statistics
import threading

import pytest
from helpers import small

from dip_core import autotune, make_task, preset, run_to_end


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    path = tmp_path / "conv_paths.json"
    monkeypatch.setenv("SPECTRAL_BIAS_LAB_CACHE", str(path))
    monkeypatch.setattr(autotune, "_memory", {})
    calls = []
    measure = autotune.measure

    def counted(task, config):
        calls.append(autotune.cache_key(task, config))
        return measure(task, config)

    monkeypatch.setattr(autotune, "measure", counted)
    return path, calls


def test_the_cpu_preset_chooses_its_path_by_itself():
    assert preset("cpu").conv_algo == "auto"


def test_auto_measures_once_then_reads_the_cache(fresh_cache, house64):
    path, calls = fresh_cache
    task = make_task("denoise", house64, 25)
    cfg = small(conv_algo="auto", width=8)
    resolved = autotune.resolve(task, cfg)
    assert autotune.describe(resolved) in autotune.CANDIDATES and resolved.conv_algo != "auto"
    assert autotune.resolve(task, cfg) == resolved and len(calls) == 1  # in memory
    assert json.loads(path.read_text()) == {calls[0]: autotune.describe(resolved)}
    autotune._memory.clear()  # another process: reads the file, measures nothing
    assert autotune.resolve(task, cfg) == resolved and len(calls) == 1
    other = make_task("denoise", house64[:32, :32], 25)  # a quarter of the area: another measurement
    autotune.resolve(other, cfg)
    assert len(calls) == 2 and len(json.loads(path.read_text())) == 2


def test_a_corrupt_or_foreign_cache_is_measured_again(fresh_cache, house64):
    path, calls = fresh_cache
    task = make_task("denoise", house64, 25)
    cfg = small(conv_algo="auto", width=8)
    path.write_text("{ not json")
    autotune.resolve(task, cfg)
    autotune._memory.clear()
    path.write_text(json.dumps({autotune.cache_key(task, cfg): "fastest-please"}))  # not a candidate
    autotune.resolve(task, cfg)
    assert len(calls) == 2 and json.loads(path.read_text())[calls[0]] in autotune.CANDIDATES


def test_measure_times_every_candidate(house64):
    times = autotune.measure(make_task("denoise", house64, 25), small(width=8))
    assert set(times) == set(autotune.CANDIDATES) and all(t > 0 for t in times.values())


def test_auto_is_only_a_choice_the_curve_is_the_chosen_paths(fresh_cache, house64):
    task = make_task("denoise", house64, 25)
    cfg = small(conv_algo="auto", iterations=12, every=4, lipschitz=1.4)
    chosen = autotune.resolve(task, cfg)
    auto = [s.psnr for s in run_to_end(task, cfg)]
    fixed = [s.psnr for s in run_to_end(task, chosen)]
    assert auto == fixed  # bit-identical: same machine, same seed, same path


@pytest.mark.parametrize("name", list(autotune.CANDIDATES))
def test_every_candidate_fits_the_same_image(name, house64):
    """The three paths are the same network: after 12 steps the curves agree closely (not bitwise)."""
    task = make_task("denoise", house64, 25)
    ref = run_to_end(task, small(iterations=12, every=12, lipschitz=1.4))[-1].psnr
    got = run_to_end(task, small(iterations=12, every=12, lipschitz=1.4, **autotune.CANDIDATES[name]))[-1].psnr
    assert got == pytest.approx(ref, abs=0.05)


def test_two_runs_resolving_at_once_measure_once_and_share_the_path(fresh_cache, house64):
    """A compare run's first start on an empty cache: both networks resolve at the same moment (two threads, as the
    app's pool); one measures, the other waits for it and reuses it, so both get the same path."""
    path, calls = fresh_cache
    task = make_task("denoise", house64, 25)
    start, got = threading.Barrier(2), {}

    def resolve(lam: float) -> None:
        start.wait()
        got[lam] = autotune.resolve(task, small(conv_algo="auto", width=8, lipschitz=lam))

    threads = [threading.Thread(target=resolve, args=(lam,)) for lam in (0.0, 1.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(json.loads(path.read_text())) == 1
    assert autotune.describe(got[0.0]) == autotune.describe(got[1.0]) in autotune.CANDIDATES


def test_measure_times_nine_steps_of_each_candidate(house64, monkeypatch):
    """What the module says it times: ROUNDS chunks of CHUNK steps, the CHUNK − 1 gaps in each, 9 per candidate."""
    gaps = {}
    real = statistics.median
    monkeypatch.setattr(autotune.statistics, "median", lambda v: gaps.setdefault(len(gaps), len(v)) and real(v))
    autotune.measure(make_task("denoise", house64, 25), small(width=8))
    assert list(gaps.values()) == [9] * len(autotune.CANDIDATES) == [autotune.ROUNDS * (autotune.CHUNK - 1)] * 3


def test_the_engine_takes_resolved_configs_only(house64):
    """``auto`` is chosen in one place (dip_core.resolve); the engine refuses a config that still says auto."""
    from dip_core import engine

    task = make_task("denoise", house64, 25)
    with pytest.raises(ValueError, match="resolve"):
        next(engine.run(task, small(conv_algo="auto", width=8)))
    assert [s.psnr for s in run_to_end(task, small(conv_algo="auto", width=8, iterations=2, every=1))]
