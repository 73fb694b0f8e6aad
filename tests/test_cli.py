"""The command line end to end: files, keys, and bad input exiting 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from outcomes import threshold
from PIL import Image

from dip_core import RunConfig, autotune

ROOT = Path(__file__).resolve().parent.parent
FAST_ANY_DEVICE = ["--preset", "cpu", "--width", "8", "--iters", "6", "--every", "2", "--quiet"]
FAST = [*FAST_ANY_DEVICE, "--device", "cpu"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dip_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def image64(tmp_path_factory) -> Path:
    from dip_core.io import load_image, resize_max_side, save_png

    path = tmp_path_factory.mktemp("img") / "house64.png"
    save_png(resize_max_side(load_image(ROOT / "assets" / "house256.png")[0], 64)[0], path)
    return path


def test_run_writes_all_outputs(tmp_path, image64):
    out = tmp_path / "out"
    res = cli("run", "--task", "denoise", "--image", str(image64), "--out", str(out), "--lipschitz", "1.4", *FAST)
    assert res.returncode == 0, res.stderr
    for name in ("observed.png", "result.png", "metrics.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["iter"] for x in lines] == [1, 2, 4, 6]
    assert set(lines[0]) == {"iter", "loss", "psnr", "ssim", "fbc", "fbc_clean", "ratio", "seconds"}
    summary = json.loads((out / "summary.json").read_text())
    assert {
        "task",
        "config",
        "iterations",
        "stopped_early",
        "stop_iter",
        "best_psnr",
        "best_iter",
        "final_psnr",
        "seconds",
        "device",
    } <= set(summary)
    assert summary["task"] == "denoise" and summary["iterations"] == 6 and summary["device"] == "cpu"
    assert summary["config"]["lipschitz"] == 1.4
    # the path that ran, chosen here (conv_algo="auto" resolved): loading this config runs the same path
    assert summary["config"]["conv_algo"] != "auto" and summary["config"]["device"] == "cpu"
    assert summary["conv_path"] == autotune.describe(RunConfig.from_dict(summary["config"])) in autotune.CANDIDATES
    assert summary["best_psnr"] == max(x["psnr"] for x in lines)
    assert np.asarray(Image.open(out / "result.png")).shape == (64, 64, 3)


@pytest.mark.outcome
def test_discrepancy_auto_stop_ends_a_denoising_run_early(tmp_path, image64):
    """Within the gap to the best that benchmarks.portability measured over seeds, threads and CPU code paths."""
    out = tmp_path / "d"
    # vanilla DIP, the configuration benchmarks.portability measured (the CLI's default is the controlled network)
    args = ["--vanilla", "--width", "16", "--lr", "0.01", "--iters", "600", "--every", "25", "--device", "cpu"]
    res = cli(
        "run", "--task", "denoise", "--image", str(image64), "--out", str(out), "--auto-stop", "discrepancy", *args
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["auto_stop"] == "discrepancy" and summary["stopped_early"]
    assert summary["stop_iter"] <= summary["iterations"] < threshold("cli_discrepancy", "stop_iter")
    assert summary["final_psnr"] >= summary["best_psnr"] - threshold("cli_discrepancy", "gap_db")


def test_observed_run_has_null_psnr(tmp_path, image64):
    out = tmp_path / "o"
    res = cli("run", "--task", "sr", "--level", "2", "--observed", "--image", str(image64), "--out", str(out), *FAST)
    assert res.returncode == 0, res.stderr
    line = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["psnr"] is None and line["fbc_clean"] is None
    assert json.loads((out / "summary.json").read_text())["final_psnr"] is None
    assert Image.open(out / "result.png").size == (128, 128)


def test_inpaint_with_mask_file(tmp_path, image64):
    mask = np.full((64, 64), 255, np.uint8)
    mask[10:30, 10:30] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    res = cli(
        "run",
        "--task",
        "inpaint",
        "--image",
        str(image64),
        "--mask",
        str(tmp_path / "mask.png"),
        "--out",
        str(tmp_path / "i"),
        *FAST,
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--task", "denoise", "--image", "{text}"], "not a readable image"),
        (["--task", "denoise", "--image", "{missing}"], "no such file"),
        (["--task", "denoise", "--image", "{tiny}"], "smallest supported"),
        (["--task", "denoise", "--image", "{img}", "--level", "-3"], "between"),
        (["--task", "jpeg", "--image", "{img}", "--level", "500"], "between"),
        (["--task", "sr", "--image", "{img}", "--level", "3"], "2, 4 or 8"),
        (["--task", "blur", "--image", "{img}"], "invalid choice"),
        (["--task", "denoise", "--image", "{img}", "--lipschitz", "nan"], "lipschitz"),
        (["--task", "denoise", "--image", "{img}", "--iters", "0"], "iterations"),
        (["--task", "denoise", "--image", "{img}", "--device", "cuda"], "cuda"),
        (["--task", "inpaint", "--image", "{img}", "--mask", "{tiny}"], "must match"),
        (["--task", "jpeg", "--image", "{img}", "--auto-stop", "discrepancy"], "needs a known noise level"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, image64, args, match):
    (tmp_path / "text.png").write_text("not an image")
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    paths = {
        "text": tmp_path / "text.png",
        "missing": tmp_path / "missing.png",
        "tiny": tmp_path / "tiny.png",
        "img": image64,
    }
    args = [a.format(**paths) for a in args]
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    res = cli("run", *FAST_ANY_DEVICE, *args, "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert match in lines[0] and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], None),  # the preset's controlled network
        (["--vanilla"], dict(lipschitz=0.0, upsample="bilinear", gaussian_sigma=None)),
        (["--lipschitz", "0"], dict(lipschitz=0.0, upsample="bilinear", gaussian_sigma=None)),
        (
            ["--lipschitz", "2", "--upsample", "gaussian", "--gaussian-sigma", "1"],
            dict(lipschitz=2.0, upsample="gaussian", gaussian_sigma=1.0),
        ),
        (["--controlled", "--task", "inpaint"], dict(lipschitz=1.6, upsample="bilinear", gaussian_sigma=None)),
    ],
)
def test_the_default_is_the_controlled_network_and_vanilla_is_one_flag_away(tmp_path, image64, flags, expected):
    from dip_core.config import PRESETS

    expected = expected or {k: PRESETS["cpu"][k] for k in ("upsample", "gaussian_sigma")}
    task = [] if "--task" in flags else ["--task", "denoise"]
    res = cli("run", *task, "--image", str(image64), "--out", str(tmp_path), *flags, *FAST)
    assert res.returncode == 0, res.stderr
    config = json.loads((tmp_path / "summary.json").read_text())["config"]
    assert {k: config[k] for k in expected} == expected
    if not flags:  # denoising's default on the cpu preset is auto (its rule met the bar): λ 1 or 1.4, said in a note
        assert config["lipschitz"] in (1.0, 1.4) and config["bound"] == "fixed"
        assert "note: λ auto: the detail rule" in res.stderr


def test_the_cpu_preset_runs_auto_where_a_rule_met_the_bar_and_its_own_lambda_elsewhere(tmp_path, image64):
    """JPEG by default: learned bounds (its rule met the bar), said in a note; inpainting: the preset's λ, no note."""
    res = cli("run", "--task", "jpeg", "--image", str(image64), "--out", str(tmp_path / "j"), *FAST)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "j" / "summary.json").read_text())["config"]["bound"] == "learned"
    assert "note: λ auto: bounds learned from λ 1.4" in res.stderr
    res = cli("run", "--task", "inpaint", "--image", str(image64), "--out", str(tmp_path / "i"), *FAST)
    config = json.loads((tmp_path / "i" / "summary.json").read_text())["config"]
    assert (
        res.returncode == 0 and config["lipschitz"] == 1.0 and config["bound"] == "fixed" and "λ auto" not in res.stderr
    )


def test_vanilla_and_a_lambda_together_are_a_usage_error(tmp_path, image64):
    res = cli(
        "run",
        "--task",
        "denoise",
        "--image",
        str(image64),
        "--out",
        str(tmp_path),
        "--vanilla",
        "--lipschitz",
        "1",
        *FAST,
    )
    assert res.returncode == 2 and "not allowed with argument" in res.stderr and len(res.stderr.splitlines()) == 1
    help_text = cli("run", "--help").stdout
    assert "--vanilla" in help_text and "vanilla DIP" in help_text and "controlled network" in help_text


def test_a_non_finite_end_writes_its_last_row_once(tmp_path, image64, monkeypatch):
    """The engine ends a run whose loss became non-finite with the last good snapshot again, marked done: the CLI
    keeps one row per iteration (it wrote that row twice) and the summary keeps the message."""
    from dataclasses import replace

    from dip_core import cli, engine

    def failing(task, config, cancel=None):
        snaps = list(engine.run(task, config))
        yield from snaps[:2]
        yield replace(snaps[1], done=True, message="stopped at iteration 3: the loss became non-finite")

    monkeypatch.setattr(cli, "run", failing)
    out = tmp_path / "out"
    assert cli.main(["run", "--task", "denoise", "--image", str(image64), "--out", str(out), *FAST]) == 0
    iters = [json.loads(x)["iter"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert iters == [1, 2]
    assert json.loads((out / "summary.json").read_text())["message"].endswith("the loss became non-finite")
