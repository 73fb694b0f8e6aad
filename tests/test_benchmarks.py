"""The benchmarks run end to end at a tiny size (no timing asserts), and the fast paths they rely on."""

from __future__ import annotations

import json
import math

import numpy as np
import outcomes
import pytest
import torch

from benchmarks import baseline_speed, options, pair_step, portability, reference, step
from benchmarks import curves as curves_command
from dip_core import RunConfig, make_task, run_to_end
from dip_core import summary as curves
from dip_core.engine import graph_start
from dip_core.layers import LipschitzConv2d, winograd_available


@pytest.mark.parametrize("name", ["clean", "noisy", "blurred"])
def test_reference_measurements_match_the_authors_values(reference_values, name):
    values, images = reference_values
    img = images[name]
    assert reference.blurriness(img) == pytest.approx(values["blur"][name], rel=1e-6)
    assert reference.sharpness(img) == pytest.approx(values["sharpness"][name], rel=1e-6)
    for pair, expected in values["fbc"].items():
        out, ref = pair.split("_vs_")
        assert reference.circular_fbc(images[out], images[ref]) == pytest.approx(expected, rel=1e-6), pair


def test_convolve2d_same_is_scipy_same():
    rng = np.random.default_rng(0)
    img = rng.random((7, 9))
    k = np.array([[1.0, -1.0]])
    got = reference.convolve2d_same(img, k)
    expected = img - np.pad(img, ((0, 0), (1, 0)))[:, :-1]  # x[i] − x[i−1], x[−1] = 0
    assert np.allclose(got, expected)
    box = reference.convolve2d_same(np.ones((5, 12)), np.full((1, 9), 1 / 9))
    assert box[2, 6] == pytest.approx(1.0) and box[2, 0] == pytest.approx(5 / 9)


def _json(capsys, main, argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_step_benchmark_runs_tiny(capsys):
    r = _json(capsys, step.main, ["--size", "64", "--steps", "2", "--chunk", "1", "--warmup", "1", "--device", "cpu"])
    keys = "device size reference_ms ours_same_ms ours_preset_ms speedup_same measure_overhead_pct peak_rss_mb"
    for key in (*keys.split(), "gflops_achieved", "gflops_peak"):
        assert key in r, key
        if key not in ("device",):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, (key, r[key])
    assert r["size"] == 64 and r["device"].startswith("cpu")
    assert r["speedup_same"] == pytest.approx(r["reference_ms"] / r["ours_same_ms"], rel=1e-2)
    assert r["ours_same_config"]["width"] == 128 and r["ours_same_config"]["measure_every_step"]
    assert r["step_gflop"] > 1  # 128 ch at 64²: about 9.7 GFLOP per step


def test_pair_step_benchmark_runs_tiny(capsys):
    argv = [
        "--device",
        "cpu",
        "--size",
        "64",
        "--width",
        "8",
        "--chunk",
        "3",
        "--rounds",
        "2",
        "--warmup",
        "3",
        "--ref-steps",
        "2",
        "--variants",
        "threads",
        "separate",
        "stacked",
    ]
    r = _json(capsys, pair_step.main, argv)
    assert set(r["pair_steps_per_s"]) == {"threads", "separate", "stacked"} and r["reference_ms_per_step"] > 0
    for v, ms in r["ms_per_pair_step"].items():
        assert ms > 0 and r["pair_steps_per_s"][v] == pytest.approx(1000 / ms, rel=0.01, abs=0.05)  # rounded to 0.1
        assert r["x_authors_pair"][v] == pytest.approx(2 * r["reference_ms_per_step"] / ms, rel=0.02)
    with pytest.raises(SystemExit, match="unknown modifier"):
        pair_step.main(["--device", "cpu", "--size", "32", "--variants", "stacked+fp8"])


def test_app_overhead_runs_tiny(capsys):
    """Every mode runs the same compare run to its end; figures only, no timing assert."""
    from benchmarks import app_overhead

    argv = ["--size", "32", "--width", "8", "--steps", "20", "--rounds", "1", "--json"]
    r = _json(capsys, app_overhead.main, argv)
    assert set(r["steps_per_s"]) == {"bare", "data", "app"} and all(v > 0 for v in r["steps_per_s"].values())
    assert r["app_vs_bare"] == pytest.approx(r["steps_per_s"]["app"] / r["steps_per_s"]["bare"], abs=0.01)


def test_baseline_speed_times_every_task_in_colour_and_grey(capsys):
    from dip_core.tasks import TASKS

    r = _json(capsys, baseline_speed.main, ["--size", "48", "--repeats", "1"])
    assert {(row["task"], row["image"]) for row in r["rows"]} == {(t, k) for t in TASKS for k in ("colour", "grey")}
    assert all(
        row["with_scoring_s"] + 1e-4 >= row["seconds"] >= 0 and row["method"].startswith("OpenCV") for row in r["rows"]
    )


def test_curves_compares_a_stacked_pair_with_separate_runs(capsys):
    argv = [
        "--pair",
        "--device",
        "cpu",
        "--size",
        "32",
        "--width",
        "8",
        "--steps",
        "60",
        "--set",
        "conv_algo=direct",
        "--reference",
        "separate",
        "--variants",
        "stacked:stacked=1",
    ]
    r = _json(capsys, curves_command.main, argv)
    nets = r["variants"]["stacked"]
    assert r["ok"] and nets["ok"] and nets["settings"] == {"stacked": True} and not nets["fell_back"]
    assert all(
        0 <= nets[n]["mean_abs_gap_db"] <= 0.3 and 15 < nets[n]["peak_ma_a"] < 40 for n in ("vanilla", "controlled")
    )
    assert nets["median_step_ms"] > 0 and r["machine"]["cpu_count"] >= 1


def test_curves_compares_two_precisions_of_one_network(capsys):
    argv = [
        "--preset",
        "cpu",
        "--device",
        "cpu",
        "--size",
        "32",
        "--width",
        "8",
        "--steps",
        "30",
        "--reference",
        "fp32:precision=fp32",
        "--variants",
        "bf16:precision=bf16",
        "--tol",
        "100",
    ]
    r = _json(capsys, curves_command.main, argv)
    lane = r["variants"]["bf16"]
    assert set(lane) >= {"network", "median_step_ms", "speedup", "ok"} and lane["settings"] == {"precision": "bf16"}
    assert lane["network"]["mean_abs_gap_db"] > 0  # bf16 really ran: the curves differ, a little
    assert r["reference"]["name"] == "fp32" and 5 < lane["network"]["peak_ma_b"] < 40


def test_a_variant_beyond_the_bound_fails_the_curves_command(monkeypatch, capsys):
    def fake_lane(variant, base, size, seed, pair):  # the reference at 20 dB, every other lane 1 dB off
        return {"psnr": [[20.0 + (variant.name != "ref")] * 60], "median_step_ms": 1.0, "warnings": []}

    monkeypatch.setattr(curves_command, "lane", fake_lane)
    assert curves_command.main(["--device", "cpu", "--steps", "60", "--reference", "ref", "--variants", "x"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["variants"]["x"]["network"]["mean_abs_gap_db"] == 1.0 and not out["ok"]


def test_curves_variant_specs_parse_as_run_settings():
    v = curves_command.Variant.parse("g:cuda_graph=0,preset=cuda,width=8,lr=0.5")
    assert (v.name, v.settings) == ("g", {"cuda_graph": False, "preset": "cuda", "width": 8, "lr": 0.5})
    assert curves_command.Variant.parse("stacked=1").settings == {"stacked": True}
    assert curves_command.Variant.parse("cpu") == curves_command.Variant("cpu", {})
    with pytest.raises(ValueError, match="unknown setting 'nope'"):
        curves_command.Variant.parse("x:nope=1")


def test_one_entry_point_lists_every_command():
    import subprocess
    import sys

    from benchmarks.__main__ import COMMANDS

    out = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], capture_output=True, text=True, check=True)
    assert all(f"  {name} " in out.stdout for name in COMMANDS)
    bad = subprocess.run([sys.executable, "-m", "benchmarks", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'nope'" in bad.stderr
    import importlib

    for module, _ in COMMANDS.values():  # every command's module exists and has its main
        assert callable(importlib.import_module(f"benchmarks.{module}").main)


@pytest.mark.parametrize("name", sorted(options.SHARED))
def test_a_shared_option_parses_one_way(name):
    flag, kw = options.SHARED[name]
    p = options.parser("x", "doc", **{name: None if name != "json" else False})
    value = {"int": "48", "float": "0.5"}.get(getattr(kw.get("type"), "__name__", ""), "cpu")
    args = p.parse_args([flag] if name == "json" else [flag, value])
    expected = True if name == "json" else kw.get("type", str)(value)
    assert getattr(args, name) == expected
    assert p.prog == "python -m benchmarks x"


def test_the_shared_options_are_declared_once():
    """No command declares a shared option itself: each takes it from benchmarks/options.py (reproduce's
    --lipschitz is a list of λ values, another option)."""
    from pathlib import Path

    for path in Path(options.__file__).parent.glob("*.py"):
        for flag, _ in options.SHARED.values():
            if (path.name, flag) != ("reproduce.py", "--lipschitz"):
                assert f'add_argument("{flag}"' not in path.read_text(), (path.name, flag)


def test_per_step_psnr_matches_the_snapshots(house64):
    task = make_task("denoise", house64, 25, seed=0)
    cfg = RunConfig(width=16, depth=3, iterations=12, every=5, lr=0.01, padding="zeros", sn_method="power")
    snaps = run_to_end(task, RunConfig(**{**cfg.to_dict(), "measure_every_step": True, "device": "cpu"}))
    steps = dict(p for s in snaps for p in s.step_psnrs)
    assert sorted(steps) == list(range(1, 13))
    for s in snaps:
        assert steps[s.iter] == pytest.approx(s.psnr, abs=1e-4)


def test_trailing_and_centred_averages():
    assert curves.trailing_average([1.0, 2.0, 3.0, 4.0], 2) == [None, 1.5, 2.5, 3.5]
    assert curves.moving_average([1.0, 2.0, 3.0, 4.0], 2).tolist() == [1.5, 2.0, 3.0, 3.5]  # centred, shrinking


@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 40, 151, 400])
@pytest.mark.parametrize("window", [1, 2, 5, 8, 17, 25, 60])
def test_centred_average_is_the_slices_means_bit_for_bit(n, window):
    """The strided mean of the full windows changes no float: the lesson events and summaries read the same curves."""
    v = np.random.default_rng(n * 100 + window).normal(25.0, 8.0, n)
    half = window // 2
    by_slices = np.array([v[max(0, i - half) : i + half + 1].mean() for i in range(n)])
    assert curves.moving_average(v.tolist(), window).tobytes() == by_slices.tobytes()


@pytest.mark.skipif(not winograd_available(), reason="NNPACK not available on this CPU")
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_winograd_conv_matches_direct(padding):
    torch.manual_seed(0)
    for c_in, c_out, h, w in [(32, 16, 8, 8), (5, 3, 13, 7)]:
        direct = LipschitzConv2d(c_in, c_out, 3, lipschitz=1.0, padding_mode=padding, sn_method="svd")
        fast = LipschitzConv2d(c_in, c_out, 3, lipschitz=1.0, padding_mode=padding, sn_method="svd")
        fast.load_state_dict(direct.state_dict())
        fast.conv_algo = "winograd"
        x1 = torch.randn(1, c_in, h, w, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_()
        g = torch.randn(1, c_out, h, w)
        assert fast.uses_winograd(x2) and not direct.uses_winograd(x1)
        y1, y2 = direct(x1), fast(x2)
        y1.backward(g)
        y2.backward(g)
        for a, b in ((y2, y1), (x2.grad, x1.grad), (fast.weight.grad, direct.weight.grad)):
            assert float((a - b).detach().norm() / b.detach().norm()) < 1e-4
        assert torch.allclose(fast.bias.grad, direct.bias.grad)


def test_winograd_falls_back_where_it_does_not_apply():
    conv = LipschitzConv2d(4, 4, 3, lipschitz=0.0)
    conv.conv_algo = "winograd"
    x = torch.randn(1, 4, 6, 6)
    assert not conv.uses_winograd(x.double())  # fp64
    assert not conv.uses_winograd(x.to(memory_format=torch.channels_last).expand(1, 4, 6, 6)[:, :, :, ::2])
    assert torch.allclose(
        conv.double()(x.double()),
        torch.nn.functional.conv2d(
            torch.nn.functional.pad(x.double(), (1, 1, 1, 1), mode="reflect"), conv.weight, conv.bias
        ),
    )


def test_graph_capture_step():
    assert graph_start(RunConfig()) is None  # off unless asked
    assert graph_start(RunConfig(cuda_graph=True, sn_method="power", lipschitz=1.4)) == 101  # after the warm-up
    assert graph_start(RunConfig(cuda_graph=True, lipschitz=0.0)) == 4
    assert graph_start(RunConfig(cuda_graph=True, sn_method="svd", lipschitz=1.4)) is None  # SVD syncs
    assert graph_start(RunConfig(cuda_graph=True, reg_noise_std=0.03)) is None  # fresh noise per step
    assert graph_start(RunConfig(cuda_graph=True, backtrack=True)) is None  # host sync per step


def test_outcome_margins_cover_the_measured_spread():
    """Every threshold an outcome test asserts holds for every seed, thread count, CPU code path and convolution
    path in the committed spread (reports/portability/spread.json), recomputed against today's CLAIMS."""
    report = json.loads((portability.REPORT / "spread.json").read_text())
    cases = portability.worst_cases(report["rows"])
    assert {c["scenario"] for c in cases} == set(outcomes.CLAIMS)
    for case in cases:
        assert case["runs"] >= 20 and case["failures"] == 0, case
    assert len({r["capability"] for r in report["rows"]}) >= 2  # the settings really changed torch's kernels


def test_every_outcome_test_is_in_the_claims():
    """The tests marked `outcome` are the ones CLAIMS names, so the spread measures what the suite asserts."""
    import re
    from pathlib import Path

    marked = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        marked |= {f"{path.name}::{m}" for m in re.findall(r"@pytest\.mark\.outcome\ndef (\w+)", path.read_text())}
    named = set(re.findall(r"# tests/(\S+::\w+)", Path(outcomes.__file__).read_text()))
    assert marked == named


def test_portability_runs_a_test_under_another_cpu_code_path():
    table = portability.run_tests(["aten-default-2t"], ["-k", "test_denoising_raises_psnr_well_above_the_observation"])
    assert table == {
        "aten-default-2t": {"tests/test_engine.py::test_denoising_raises_psnr_well_above_the_observation": "passed"}
    }
    assert "| pass |" in portability.tests_markdown(table)
