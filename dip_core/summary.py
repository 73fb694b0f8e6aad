"""Reading a run's curves: smoothing, the PSNR at a step, where each stop rule fires, and the summaries built
from them (the CLI's ``summary.json``, a sweep row, the reproduction harness's and the time-to-quality lanes').

A curve is a run's snapshot records in order (``Snapshot.record()`` plus the per-step ``step_ratios`` and
``step_losses``, and the denoising threshold ``noise_energy`` in the first), as ``dip_core.sweep`` writes them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import autotune
from .config import RunConfig
from .engine import Snapshot
from .stopping import first_discrepancy_stop, first_stop
from .tasks import Task


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Centred moving average: m_i = mean v[i − w//2 … i + w//2] (window w in samples), shrinking at the ends.
    The full windows are one strided mean, bit for bit the slices' means (tests/test_benchmarks.py)."""
    v = np.asarray(values, dtype=np.float64)
    half, n = window // 2, len(v)
    out = np.empty(n)
    if n > 2 * half:
        out[half : n - half] = sliding_window_view(v, 2 * half + 1).mean(axis=1)
    for i in sorted({*range(min(half, n)), *range(max(0, n - half), n)}):
        out[i] = v[max(0, i - half) : i + half + 1].mean()
    return out


def trailing_average(values: Sequence[float], window: int) -> list[float | None]:
    """Trailing moving average: m_i = mean v[i − w + 1 … i] (running sum), None before the window is full."""
    out: list[float | None] = []
    acc = 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / window if i >= window - 1 else None)
    return out


def psnr_at(iters: Sequence[int], psnrs: Sequence[float], t: int | None) -> float | None:
    """PSNR of the first snapshot at or after step t, or of the last one (None when t is None or no snapshot)."""
    if t is None or not len(psnrs):
        return None
    idx = int(np.searchsorted(np.asarray(iters), t))
    return float(psnrs[min(idx, len(psnrs) - 1)])


def best_psnr(points: Iterable[tuple[int, float | None]]) -> tuple[float | None, int | None]:
    """(PSNR, step) of the first highest of the (step, PSNR) points with a PSNR, or (None, None)."""
    scored = [(t, p) for t, p in points if p is not None]
    if not scored:
        return None, None
    t, p = max(scored, key=lambda x: x[1])
    return p, t


def step_values(records: list[dict], name: str) -> list[tuple[int, float]]:
    """The per-step (t, value) pairs of a curve (``name`` = ``step_ratios`` or ``step_losses``), in order."""
    return [tuple(v) for rec in records for v in rec.get(name, [])]


def stop_iters(records: list[dict], iterations: int) -> dict[str, int | None]:
    """Where each rule fires on a curve: paper and relative on its per-step ratios (budget ``iterations``),
    discrepancy on its per-step losses (None without the first record's ``noise_energy``)."""
    ratios = step_values(records, "step_ratios")
    stops = {rule: first_stop(ratios, rule, iterations) for rule in ("paper", "relative")}
    energy, losses = records[0].get("noise_energy"), step_values(records, "step_losses")
    stops["discrepancy"] = first_discrepancy_stop(losses, energy) if energy and losses else None
    return stops


def run_stats(records: list[dict], iterations: int) -> dict:
    """A sweep row's statistics of a curve: final and best snapshot PSNR, and per rule its stop step and the
    raw snapshot PSNR there (``stop_<rule>_iter``, ``stop_<rule>_psnr``)."""
    scored = [(r["iter"], r["psnr"]) for r in records if r["psnr"] is not None]
    iters, psnrs = [t for t, _ in scored], [p for _, p in scored]
    best, best_iter = best_psnr(scored)
    out = {"final_psnr": psnrs[-1] if psnrs else None, "best_psnr": best, "best_iter": best_iter}
    for rule, t in stop_iters(records, iterations).items():
        out[f"stop_{rule}_iter"] = t
        out[f"stop_{rule}_psnr"] = psnr_at(iters, psnrs, t)
    return out


def smoothed_summary(records: list[dict], iterations: int, every: int) -> dict:
    """The reproduction harness's statistics of a curve: peak, end and drop of the PSNR smoothed over ~50 steps
    (centred ``moving_average``), per rule its stop step and the smoothed PSNR there, FBC at peak and end."""
    iters = [r["iter"] for r in records]
    out = {"fbc_at_end": records[-1]["fbc"], "seconds": records[-1]["seconds"]}
    out["has_discrepancy"] = bool(records[0].get("noise_energy")) and "step_losses" in records[0]
    stops = stop_iters(records, iterations)
    if any(r["psnr"] is None for r in records):  # no ground truth (enhancement): FBC and stops only
        out.update(peak_psnr=None, peak_iter=None, raw_peak_psnr=None, end_psnr=None, drop=None, near_peak_iter=None)
        out["fbc_at_peak"] = records[-1]["fbc"]
        for rule, t in stops.items():
            out[f"stop_{rule}_iter"] = t
            out[f"stop_{rule}_psnr"] = None
        return out
    raw = np.array([r["psnr"] for r in records])
    smooth = moving_average(list(raw), max(1, 50 // every))
    peak_i = int(np.argmax(smooth))
    end_psnr = float(smooth[-1])
    out.update(
        peak_psnr=float(smooth[peak_i]),
        peak_iter=iters[peak_i],
        raw_peak_psnr=float(raw.max()),
        end_psnr=end_psnr,
        drop=float(smooth[peak_i] - end_psnr),
        fbc_at_peak=records[peak_i]["fbc"],
        # the earliest a stop could come and still be within 0.3 dB of the peak
        near_peak_iter=iters[int(np.argmax(smooth >= smooth[peak_i] - 0.3))],
    )
    for rule, t in stops.items():
        out[f"stop_{rule}_iter"] = t
        out[f"stop_{rule}_psnr"] = psnr_at(iters, smooth, t)
    return out


def target_summary(psnrs: list[float], seconds: list[float], target: float, window: int) -> dict:
    """A per-step PSNR curve against a target: the first step whose trailing ``window``-step average reaches
    ``target`` (and the seconds to it, measured and as steps × median step time), raw and averaged peaks,
    final average and its drop from the peak (rounded as the time-to-quality benchmark reports them)."""
    p, secs = psnrs, seconds
    ma = trailing_average(p, window)
    cross = next((i for i, m in enumerate(ma) if m is not None and m >= target), None)
    cum = list(_cumsum(secs))
    valid = [(m, i) for i, m in enumerate(ma) if m is not None]
    peak_ma, peak_ma_i = max(valid) if valid else (None, None)  # the last of equal peaks
    peak_i = max(range(len(p)), key=p.__getitem__) if p else None
    median_step = statistics.median(secs) if secs else None
    final_ma = ma[-1] if ma else None
    return {
        "steps": len(p),
        "steps_to_target": None if cross is None else cross + 1,
        "s_to_target": None if cross is None else round(cum[cross], 2),
        "projected_s_to_target": None if cross is None else round((cross + 1) * median_step, 2),
        "median_step_ms": None if median_step is None else round(1000 * median_step, 2),
        "peak_psnr": None if peak_i is None else round(p[peak_i], 3),
        "peak_step": None if peak_i is None else peak_i + 1,
        "peak_s": None if peak_i is None else round(cum[peak_i], 2),
        "peak_ma_psnr": None if peak_ma is None else round(peak_ma, 3),
        "peak_ma_step": None if peak_ma_i is None else peak_ma_i + 1,
        "final_ma_psnr": None if final_ma is None else round(final_ma, 3),
        "drop_from_peak_ma_db": None if peak_ma is None or final_ma is None else round(peak_ma - final_ma, 3),
        "total_s": round(cum[-1], 2) if cum else 0.0,
    }


def _cumsum(values: Iterable[float]) -> Iterator[float]:
    acc = 0.0
    for v in values:
        acc += v
        yield acc


def summarise(task: Task, config: RunConfig, snapshots: list[Snapshot], device: str) -> dict:
    """The run's summary (CLI ``summary.json``) of a resolved ``config``: stop, best and final PSNR, time, device."""
    final = snapshots[-1]
    best, best_iter = best_psnr((s.iter, s.psnr) for s in snapshots)
    return {
        "task": task.name,
        "level": task.level,
        "config": config.to_dict(),
        "iterations": final.iter,
        "stopped_early": final.stopped,
        "stop_iter": final.stop_iter,
        "best_psnr": best,
        "best_iter": best_iter,
        "final_psnr": final.psnr,
        "seconds": final.seconds,
        "device": device,
        "conv_path": autotune.describe(config),
        "message": final.message,
    }
