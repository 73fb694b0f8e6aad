"""The reproduction harness: a tiny real run end to end, and its curve summaries on known curves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import reproduce
from dip_core import summary

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_reproduction_writes_report_curves_and_plots(tmp_path):
    out = tmp_path / "rep"
    argv = [
        "--task",
        "denoise",
        "--images",
        str(ROOT / "assets" / "house256.png"),
        "--size",
        "32",
        "--width",
        "8",
        "--depth",
        "3",
        "--iters",
        "12",
        "--every",
        "4",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert reproduce.main(argv) == 0
    report = (out / "report.md").read_text()
    assert "| house256 | 0 | vanilla |" in report and "| house256 | 0 | lam1.4 |" in report
    assert "## The paper's claims, checked per image" in report
    assert re.search(r"\| house256 \| 0 \| OpenCV NL-means \(h [\d.]+\) \| \d+\.\d\d \| lam1\.4 \| [+-]\d", report)
    assert re.search(r"\| lam1\.4 \| controlled peak ≥ vanilla peak − 0\.5 dB \| [01] / 1 \|", report)
    curve = [json.loads(x) for x in (out / "house256__vanilla__s0.jsonl").read_text().splitlines()]
    assert [c["iter"] for c in curve] == [1, 4, 8, 12]
    assert [t for c in curve for t, _ in c["step_ratios"]] == list(range(1, 13))
    assert [t for c in curve for t, _ in c["step_losses"]] == list(range(1, 13))
    assert 0.9 * (25 / 255) ** 2 < curve[0]["noise_energy"] < (25 / 255) ** 2  # denoising: the discrepancy threshold
    assert "discrepancy stop (iter / PSNR)" in report and "our discrepancy auto-stop" in report
    assert (out / "house256__s0.png").stat().st_size > 10_000
    before = report
    (out / "report.md").unlink()
    assert reproduce.main([*argv, "--report-only"]) == 0
    rebuilt = (out / "report.md").read_text()
    assert rebuilt.count("| house256 | 0 |") == before.count("| house256 | 0 |")


def test_summary_of_a_decaying_and_a_flat_curve():
    iters = list(range(10, 1010, 10))
    decaying = [
        {
            "iter": t,
            "psnr": 30 - abs(t - 300) / 100,
            "fbc": [0.9, 0.7, 0.4, 0.2 + t / 2000, 0.1 + t / 2000],
            "seconds": t / 10,
        }
        for t in iters
    ]
    s = summary.smoothed_summary(decaying, 1000, 10)
    assert s["peak_iter"] == pytest.approx(300, abs=20)
    assert s["drop"] == pytest.approx(s["peak_psnr"] - s["end_psnr"]) and s["drop"] > 6
    assert s["stop_paper_iter"] is None
    assert s["near_peak_iter"] == pytest.approx(265, abs=20)  # first within 0.3 dB of the (smoothed) peak


def test_stop_rules_on_recorded_ratios():
    t = np.arange(1, 3001)
    flat_after = [(int(i), float(5 + 20 * np.exp(-i / 200))) for i in t]  # settles: both rules fire
    stops = summary.stop_iters([{"step_ratios": flat_after}], 3000)
    assert stops["paper"] is not None and 200 < stops["paper"] < 3000
    assert stops["relative"] is not None and stops["relative"] < 3000
    assert stops["discrepancy"] is None  # no noise energy in the curve
    drifting = [(int(i), float(i)) for i in t]  # keeps drifting by 100 per window: never fires
    assert summary.stop_iters([{"step_ratios": drifting}], 3000)["paper"] is None


def test_variants():
    names = [v.name for v in reproduce.variants("denoise", [1.4, 2.0], [0.5])]
    assert names == ["vanilla", "lam1.4_gauss0.5", "lam2_gauss0.5"]
    assert [v.lipschitz for v in reproduce.variants("inpaint", None, None)] == [0.0, 1.6]


def test_claims_summary_counts_held_per_config_and_claim():
    lines = [
        ("a", 0, "lam1", "controlled ends within 0.3 dB of its peak", True, "drop 0.10 dB"),
        ("b", 0, "lam1", "controlled ends within 0.3 dB of its peak", False, "drop 0.90 dB"),
        ("b", 1, "lam1", "controlled ends within 0.3 dB of its peak", True, "drop 0.20 dB"),
        ("a", 0, "lam2", "controlled ends within 0.3 dB of its peak", False, "drop 2.00 dB"),
    ]
    table = reproduce.claims_summary(lines)
    assert "| lam1 | controlled ends within 0.3 dB of its peak | 2 / 3 |" in table
    assert "| lam2 | controlled ends within 0.3 dB of its peak | 0 / 1 |" in table


def test_discrepancy_stop_is_judged_only_where_it_applies():
    t = list(range(1, 301))
    records = [
        {"iter": i, "psnr": 20 + i / 100, "fbc": [0.5] * 5, "seconds": i / 10, "step_losses": [[i, 2.0 - i / 100]]}
        for i in t
    ]
    records[0]["noise_energy"] = 1.0
    s = summary.smoothed_summary(records, 300, 1)
    assert s["has_discrepancy"] and s["stop_discrepancy_iter"] == 125  # mean of 2 − i/100 over i = 76 … 125 is 1
    del records[0]["noise_energy"]  # a JPEG curve, or one recorded before the rule existed
    s = summary.smoothed_summary(records, 300, 1)
    assert not s["has_discrepancy"] and s["stop_discrepancy_iter"] is None
    assert not reproduce.has_stop(s, "discrepancy") and reproduce.has_stop(s, "paper")
