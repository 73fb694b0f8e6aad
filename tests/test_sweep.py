"""Sweeps: all rows of a tiny grid, resuming after a kill, Ray and sequential giving the same rows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dip_core import summary, sweep
from dip_core.io import load_image, resize_max_side, save_png

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = dict(width=8, depth=3, iterations=8, every=4, device="cpu", lr=0.01)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep_imgs")
    img = load_image(ROOT / "assets" / "house256.png")[0]
    save_png(resize_max_side(img, 24)[0], folder / "a.png")
    save_png(resize_max_side(img[64:192, 64:192], 24)[0], folder / "b.png")
    return folder


def tiny_grid(images: Path) -> list[sweep.RunSpec]:
    return sweep.grid("denoise", str(images / "a.png"), [0.0, 1.4], [None, 0.5], 1, preset="cpu", overrides=OVERRIDES)


def rows_by_key(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in sweep.load_rows(out)}


def test_run_stats_read_the_raw_snapshots_and_the_reproduction_summary_the_smoothed_ones():
    """A sweep row's stop PSNR is the snapshot's own; the reproduction harness's is the smoothed curve's."""
    psnrs = [20.0, 24.0, 30.0, 22.0, 26.0, 25.0]
    records = [{"iter": 10 * (i + 1), "psnr": p, "fbc": [0.5] * 5, "seconds": i} for i, p in enumerate(psnrs)]
    records[0]["noise_energy"] = 1.0
    for i, rec in enumerate(records):  # the loss reaches the noise energy at step 50 (window 50)
        rec["step_losses"] = [(t, 1.0 if t <= 50 else 0.5) for t in range(10 * i + 1, 10 * i + 11)]
    stats = summary.run_stats(records, 60)
    assert (stats["best_psnr"], stats["best_iter"], stats["final_psnr"]) == (30.0, 30, 25.0)
    assert stats["stop_discrepancy_iter"] == 50 and stats["stop_discrepancy_psnr"] == 26.0
    assert stats["stop_paper_iter"] is None and stats["stop_paper_psnr"] is None  # no ratios recorded
    smoothed = summary.smoothed_summary(records, 60, 10)  # centred over 5 snapshots
    assert smoothed["stop_discrepancy_iter"] == 50
    assert smoothed["stop_discrepancy_psnr"] == pytest.approx((30.0 + 22.0 + 26.0 + 25.0) / 4)


def test_grid_names_and_keys(images):
    specs = sweep.grid("denoise", str(images), [0, 1.4], [None, 0.5], 2, overrides=OVERRIDES)
    assert len(specs) == 2 * 2 * 2 * 2
    assert len({s.key for s in specs}) == len(specs)
    assert {s.variant for s in specs} == {"vanilla", "lam0_gauss0.5", "lam1.4", "lam1.4_gauss0.5"}


def test_sequential_sweep_resumes_only_missing_rows(images, tmp_path):
    specs = tiny_grid(images)
    first = sweep.execute(specs[:2], tmp_path, use_ray=False)
    assert [r["key"] for r in first] == [s.key for s in specs[:2]]
    before = (tmp_path / "results.jsonl").read_text()
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"key": "torn')  # a crash mid-write leaves a torn line: ignored, not fatal
    rest = sweep.execute(specs, tmp_path, use_ray=False)
    assert sorted(r["key"] for r in rest) == sorted(s.key for s in specs[2:])
    assert (tmp_path / "results.jsonl").read_text().startswith(before)
    rows = rows_by_key(tmp_path)
    assert set(rows) == {s.key for s in specs}
    assert sweep.execute(specs, tmp_path, use_ray=False) == []  # nothing left to do
    row = rows[specs[0].key]
    assert row["iterations"] == 8 and row["final_psnr"] is not None and row["best_iter"] in (1, 4, 8)
    assert (tmp_path / f"{specs[0].key}.jsonl").is_file()


def test_summary_table_names_the_best_configuration(images, tmp_path):
    table, _ = sweep.sweep(tiny_grid(images), tmp_path, use_ray=False)
    assert "| a | " in table and "best by final PSNR" in table
    assert re.search(r"\| a \| \d+\.\d\d dB \| ", table)  # the OpenCV baseline's PSNR beside the best DIP
    rows = sweep.load_rows(tmp_path)
    assert all(r["baseline_method"].startswith("OpenCV NL-means") and r["baseline_psnr"] > 0 for r in rows)
    assert (tmp_path / "summary.md").read_text().endswith(table)


def test_cli_sweep_sequential_fallback(images, tmp_path):
    args = [
        "--task",
        "denoise",
        "--images",
        str(images),
        "--lipschitz",
        "0",
        "1.4",
        "--gaussian-sigma",
        "none",
        "--preset",
        "cpu",
        "--width",
        "8",
        "--iters",
        "4",
        "--every",
        "2",
        "--device",
        "cpu",
        "--no-ray",
        "--stop-rule",
        "discrepancy",
    ]
    res = subprocess.run(
        [sys.executable, "-m", "dip_core", "sweep", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "4 runs, 0 already done, sequential" in res.stderr
    assert len(sweep.load_rows(tmp_path)) == 4 and (tmp_path / "summary.md").is_file()
    assert "best by PSNR at the discrepancy stop" in (tmp_path / "summary.md").read_text()
    assert all("stop_discrepancy_iter" in r for r in sweep.load_rows(tmp_path))  # None here: 4 steps are too few
    bad = subprocess.run(
        [sys.executable, "-m", "dip_core", "sweep", *args, "--gaussian-sigma", "wide", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


needs_ray = pytest.mark.skipif(not sweep.ray_available(), reason="ray is not installed (requirements-sweep.txt)")


@needs_ray
@pytest.mark.slow
def test_ray_sweep_gives_the_same_rows_as_sequential(images, tmp_path):
    import ray

    specs = tiny_grid(images)
    try:
        sweep.execute(specs, tmp_path / "ray", use_ray=True, cpus_per_run=1)
    finally:
        ray.shutdown()
    sweep.execute(specs, tmp_path / "seq", use_ray=False)
    with_ray, sequential = rows_by_key(tmp_path / "ray"), rows_by_key(tmp_path / "seq")
    assert set(with_ray) == set(sequential) == {s.key for s in specs}
    for key, row in with_ray.items():
        other = sequential[key]
        assert row["best_iter"] == other["best_iter"] and row["iterations"] == other["iterations"]
        # the same runs; only the thread count differs (1 per Ray task), so float sums may differ slightly
        assert row["final_psnr"] == pytest.approx(other["final_psnr"], abs=1e-3)


@needs_ray
@pytest.mark.slow
def test_killed_ray_sweep_restarts_and_completes_only_missing_rows(images, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "dip_core",
        "sweep",
        "--task",
        "denoise",
        "--images",
        str(images),
        "--lipschitz",
        "0",
        "1.4",
        "--gaussian-sigma",
        "none",
        "0.5",
        "--preset",
        "cpu",
        "--width",
        "8",
        "--iters",
        "30",
        "--every",
        "10",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and len(sweep.load_rows(out)) < 1:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no clean shutdown
        proc.wait(timeout=30)
    done_before = sweep.load_rows(out)
    assert 1 <= len(done_before) < 8
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"8 runs, {len(done_before)} already done, ray" in res.stderr
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.endswith("}")]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 8
    assert rows[: len(done_before)] == done_before


def tiny_sweep_args(task: str, image: Path, out: Path, preset: str) -> list[str]:
    """``python -m dip_core sweep`` arguments of a 2-step sweep of one image, in this process, on CPU."""
    return [
        "sweep",
        "--task",
        task,
        "--images",
        str(image),
        "--out",
        str(out),
        "--no-ray",
        "--preset",
        preset,
        "--width",
        "8",
        "--iters",
        "2",
        "--every",
        "1",
        "--device",
        "cpu",
    ]


def test_a_bad_sigma_anywhere_in_the_grid_fails_before_any_run(images, tmp_path):
    """Every σ is checked by the parser and every spec before the first run (once only the first spec was)."""
    from dip_core import cli

    args = tiny_sweep_args("denoise", images / "a.png", tmp_path, "cpu")
    for sigmas in (["0.5", "99"], ["none", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*args, "--gaussian-sigma", *sigmas])
        assert exit_.value.code == 2
    assert cli.main([*args, "--lipschitz", "1", "--gaussian-sigma", "0.5", "none"]) == 0  # 'none': bilinear
    assert {r["spec"]["upsample"] for r in sweep.load_rows(tmp_path)} == {"gaussian", "bilinear"}
    with pytest.raises(SystemExit):  # a λ out of range in the list: the parser refuses it, nothing runs
        cli.main([*args, "--lipschitz", "1", "500", "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("task", ["inpaint", "enhance", "denoise"])
def test_sweep_and_run_take_the_same_default_lambda(task):
    """One rule (dip_core.config.preset_control): on the paper's scale a sweep without --lipschitz uses the task's
    own λ, as ``run`` does (it used 1.4 for every task), and the CPU preset's own control on CPU."""
    from dip_core import cli
    from dip_core.config import preset_control
    from dip_core.tasks import TASKS

    for preset in ("paper", "cuda", "cpu"):
        args = cli.build_parser().parse_args(["run", "--task", task, "--image", "x", "--out", "y", "--preset", preset])
        expected = TASKS[task].paper_lipschitz if preset != "cpu" else preset_control(task, "cpu")["lipschitz"]
        assert cli.control_of(args)["lipschitz"] == expected
    assert preset_control(task, "paper")["lipschitz"] == TASKS[task].paper_lipschitz
    assert preset_control("inpaint", "paper")["lipschitz"] != preset_control("denoise", "paper")["lipschitz"]


def test_sweep_cli_uses_the_tasks_lambda_on_the_paper_preset(images, tmp_path):
    from dip_core import cli
    from dip_core.tasks import TASKS

    args = tiny_sweep_args("inpaint", images / "a.png", tmp_path, "paper")
    assert cli.main(args) == 0
    assert [r["spec"]["lipschitz"] for r in sweep.load_rows(tmp_path)] == [TASKS["inpaint"].paper_lipschitz]


def test_the_summary_names_the_stop_rule_it_reads_and_iterations_over_seeds():
    """The second table reads and names ``stop_rule``'s stop (it always read the paper's), and gives iterations over
    seeds as lowest–highest beside PSNRs averaged over them (it showed the first seed's best iteration)."""

    def row(seed, best_iter, relative):
        spec = dict(image="x/a.png", variant="lam1", seed=seed)
        return dict(
            key=f"a{seed}",
            spec=spec,
            final_psnr=20.0 + seed,
            best_psnr=25.0 + seed,
            best_iter=best_iter,
            seconds=1.0,
            stop_paper_iter=None,
            stop_paper_psnr=None,
            stop_relative_iter=relative,
            stop_relative_psnr=None if relative is None else 24.0 + seed,
        )

    table = sweep.summary_table([row(0, 100, 80), row(1, 140, 90), row(2, 120, None)], "relative")
    assert "relative stop (iter / PSNR)" in table and "paper stop" not in table
    assert "| a | lam1 | 3 | 21.00 | 26.00 (100–140) | 80–90 / 24.50 (2 of 3 seeds) | 1 |" in table
