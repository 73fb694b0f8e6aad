"""benchmarks.auto_lambda (issue 35): the lanes' mechanics and the bar, at toy sizes."""

from __future__ import annotations

import json

import pytest

from benchmarks import auto_lambda as al
from dip_core import bound
from dip_core.tasks import spec_of

TOY = {**al.SCALE, "size": 32, "steps": 300, "every": 10, "width": 16, "lr": 0.02}


def job(lane: str, task: str = "denoise", level: float = 50.0) -> dict:
    image = str(al.ASSETS / "astronaut.png")
    return dict(key=lane, set="tune", image=image, task=task, level=level, lane=lane, seed=0, scale=TOY)


def test_lanes_parse_and_auto_is_the_composition():
    assert al.lane_settings("lam1.4", "jpeg") == dict(lam=1.4, learn=None)
    assert al.lane_settings("learn0", "inpaint")["learn"] == 0.0  # no penalty, and still learned
    assert al.lane_settings("learnT", "jpeg")["learn"] == al.LEARN_T["jpeg"] == spec_of("jpeg").auto.penalty
    assert al.lane_settings("learn0", "inpaint")["learn"] == spec_of("inpaint").auto.penalty  # what ships is judged
    for task, _ in al.TASKS:
        assert al.lane_settings("auto", task) == al.lane_settings(al.AUTO[task], task)
    with pytest.raises(SystemExit, match="unknown lane"):
        al.jobs_of(None, ["tune"], ["lam1", "nope"], 0, TOY)
    with pytest.raises(SystemExit, match="needs --data"):
        al.jobs_of(None, ["judge"], ["lam1"], 0, TOY)
    assert len(al.jobs_of(None, ["tune"], ["vanilla", "lam1"], 0, TOY)) == 3 * 3 * 2


def test_the_detail_lane_runs_the_lambda_of_the_image_bit_for_bit():
    """``detail`` builds at ``denoise_lambda``'s λ: its curve is that fixed λ's, and it costs nothing per step."""
    from dip_core.io import load_image
    from dip_core.tasks import make_task

    row = al.run_job(job("detail", level=25.0))
    lam = bound.denoise_lambda(make_task("denoise", load_image(job("detail")["image"], max_side=32)[0], 25.0))
    assert row["lam"] == lam and row["psnr"] == al.run_job(job(f"lam{lam:g}", level=25.0))["psnr"]
    with pytest.raises(SystemExit, match="unknown lane"):
        al.lane_settings("detail", "jpeg")  # denoising only: the detail is weighed against the known noise


def test_learned_lanes_move_their_bounds():
    row = al.run_job({**job("learn0", "inpaint", 0.5), "scale": {**TOY, "steps": 30}})
    assert row["lam"] is None and len(row["bounds"]) == 12
    assert any(b != pytest.approx(1.6) for b in row["bounds"])  # learned from the task's paper λ, with no penalty


def test_the_bar_and_the_report(tmp_path):
    def row(lane: str, image: str, psnr: list[float], task: str = "denoise", ms: float = 10.0) -> dict:
        return dict(set="judge", task=task, image=image, lane=lane, psnr=psnr, ms_per_step=ms, fired=None)

    climb = [20.0 + i for i in range(10)]
    rows = [
        row("vanilla", "a.png", [20, 25, 30, 30, 30, 25, 20, 20, 20, 20]),  # smoothed peak 28
        row("lam1", "a.png", [27.5] * 10),
        row("lam1.4", "a.png", [27.0] * 10),
        row("auto", "a.png", [27.8] * 10, ms=12.0),  # ≥ 28 − 0.3, ≥ 27.5 − 0.1, holds: met
        row("vanilla", "b.png", climb),
        row("lam1", "b.png", climb),
        row("lam1.4", "b.png", climb),
        row("auto", "b.png", [x - 0.5 for x in climb], ms=14.0),  # 0.5 dB under the fixed λ's end: missed
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    per = {r["image"]: {} for r in rows}
    for r in rows:
        per[r["image"]][r["lane"]] = r
    assert al.meets(per["a.png"], "auto") and not al.meets(per["b.png"], "auto")
    text = al.report(tmp_path)
    assert "| auto | 2 | 27.65 | -0.35 | 0.00 | 13.0 | 1/2 (50%) |" in text and "slow" not in text
    assert "| a.png | 20.00 (8.00) | 27.50 (0.00) | 27.00 (0.00) | 27.80 (0.00) ✓ |" in text
    assert "**judge, all tasks**: `auto` 1/2, `lam1` 1/2, `lam1.4` 1/2" in text
