"""The app's event functions and helpers, called directly (no server)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
from gradio.components.plot import PlotData
from outcomes import APP_LAMBDA, threshold
from PIL import Image

from demo import events, exports, frames, plots
from demo.examples import ASSETS, EXAMPLES, zone_plate
from demo.form import CAPTION_OUTPUTS, RUN_OUTPUTS, RunForm
from demo.inputs import parse_request, scaled_every
from demo.records import Track, run_short
from demo.session import SPECTRUM_SIDE, STOPS, LabRun, SpectrumView
from demo.settings import LIMITS, default_control, limits_for
from dip_core import InputError, RunConfig, Snapshot, bound, make_task, observed_task
from dip_core.tasks import TASKS

TINY = dict(max_side=32, width=8, lr=0.01)  # a run of a few seconds on 2 cores


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def default_lambda(image: str, task: str = "denoise") -> float:
    """The λ a default run of ``task`` on ``image`` shows: auto's for this image where auto is the default."""
    req = parse_request(image, task=task, max_side=32)
    lam = req.configs["controlled"].lipschitz
    return bound.auto_control(req.task)[0]["lipschitz"] if lam == "auto" else lam


def run_all(**kwargs) -> list[tuple]:
    """The live run's outputs, frame by frame, its figures (sent as their JSON) read back as plotly figures."""
    return [tuple(as_plotly(v) for v in out) for out in events.run_lab(RunForm(**{**TINY, **kwargs}))]


def as_plotly(value):
    return go.Figure(json.loads(value.plot), _validate=False) if isinstance(value, PlotData) else value


def pixels(path: str | Path) -> np.ndarray:
    """The pixels of an image file the run wrote (a live run sends its images as PNG files)."""
    return np.asarray(Image.open(path))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lipschitz=float("nan")), "lipschitz"),
        (dict(lipschitz=-1), "lipschitz"),
        (dict(iterations=10**9), "iterations"),
        (dict(iterations=2.5), "whole number"),
        (dict(seed=-3), "seed"),
        (dict(task="deblur"), "task"),
        (dict(level=float("inf")), "noise"),
        (dict(task="sr", level=3), "factor"),
        (dict(upsample="bicubic"), "upsample"),
        (dict(gaussian_sigma="wide"), "gaussian_sigma"),
        (dict(auto_stop="soon"), "auto_stop"),
        (dict(task="jpeg", auto_stop="discrepancy"), "needs a known noise level"),
        (dict(level=0, auto_stop="discrepancy"), "needs a known noise level"),
        (dict(compare="maybe"), "compare"),
        (dict(max_side=10**6), "max_side"),
        (dict(width=10**4), "width"),
        (dict(task="inpaint", observed=True), "needs a mask"),
    ],
)
def test_bad_parameters_are_one_line_input_errors(tiny_png, kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        parse_request(tiny_png, **kwargs)
    assert "\n" not in str(err.value)


def test_an_unknown_parameter_is_one_line_of_ours(tiny_png):
    with pytest.raises(InputError, match="^unknown parameter 'itertions': a run takes image, task, level, .*, lr$"):
        parse_request(tiny_png, itertions=10)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_bad_files_raise_gr_error(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(gr.Error) as err:
        next(events.run_lab(RunForm(str(path), **TINY)))
    assert "\n" not in err.value.message and err.value.message


def test_missing_image_is_a_gr_error():
    with pytest.raises(gr.Error, match="upload an image"):
        next(events.run_lab(RunForm(None)))


def test_request_defaults_and_compare(tiny_png):
    req = parse_request(tiny_png, max_side=32)
    assert list(req.configs) == ["vanilla", "controlled"] and req.compare
    assert req.configs["vanilla"].lipschitz == 0 and req.configs["vanilla"].upsample == "bilinear"
    denoise = default_control("denoise")  # on this machine's preset: auto on CPU (its rule met the bar there)
    assert req.configs["controlled"].lipschitz == ("auto" if denoise["lipschitz_auto"] else denoise["lipschitz"])
    assert req.task.level == 25 and req.configs["controlled"].iterations == LIMITS.iterations
    single = parse_request(tiny_png, compare=False, lipschitz=None, task="inpaint", max_side=32)
    assert list(single.configs) == ["controlled"]
    assert single.configs["controlled"].lipschitz == default_control("inpaint")["lipschitz"]
    assert not default_control("inpaint")["lipschitz_auto"]  # no rule met the bar for inpainting


def test_large_images_are_resized_with_a_notice(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.full((300, 500, 3), 128, np.uint8)).save(path)
    req = parse_request(str(path), max_side=64)
    assert req.task.out_size == (38, 64)
    assert any("resized from 500×300" in n for n in req.notes)
    notice, editor = events.describe_image(str(path), 64)
    assert "resized" in notice and editor["background"].shape == (38, 64, 3)
    assert events.describe_image(str(tmp_path / "missing.png"), 64)[0].startswith("⚠️")


def test_observed_sr_caps_the_result_size(tiny_png):
    req = parse_request(tiny_png, task="sr", level=4, observed=True, max_side=64)
    assert max(req.task.out_size) <= 64 and req.task.clean is None


def test_mask_is_resized_to_the_image(tmp_path, tiny_png):
    mask = np.full((64, 64), 255, np.uint8)
    mask[20:40, 20:40] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    req = parse_request(tiny_png, task="inpaint", mask=str(tmp_path / "mask.png"), max_side=32)
    assert req.mask_given and req.task.mask.shape[-2:] == (32, 32)
    assert 0.08 < 1 - float(req.task.mask.mean()) < 0.12  # a 20×20 hole in 64×64


def test_numpy_images_are_accepted():
    img = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
    assert parse_request(img, max_side=32).task.out_size == (19, 32)
    with pytest.raises(InputError, match="NaN"):
        parse_request(np.full((24, 24), np.nan))


def test_scaled_every_keeps_cpu_updates_frequent():
    cpu = limits_for("cpu")
    assert scaled_every(cpu, (128, 128), 24) == cpu.every
    assert scaled_every(cpu, (128, 128), 24, runs=2) == cpu.every // 2
    assert scaled_every(cpu, (256, 256), 64) < cpu.every
    assert scaled_every(limits_for("cuda"), (512, 512), 128) == limits_for("cuda").every


# ---------------------------------------------------------------- runs


def test_run_streams_frames_then_downloads(tiny_png):
    outs = run_all(image=tiny_png, iterations=30)
    assert len(outs) >= 4
    obs, vanilla, result, clean, curves, spectrum, status, files, baseline, *_captions = outs[-1]
    assert pixels(outs[0][0]["value"]).shape == (32, 32, 3) and outs[0][0]["label"] == "Observation (σ 25)"
    lam = default_lambda(tiny_png)
    assert pixels(result).shape == (32, 32, 3) and outs[0][2]["label"] == f"Controlled (λ {lam:g}, bilinear)"
    assert outs[0][1]["label"] == "Vanilla DIP (λ 0, bilinear)" and pixels(vanilla).shape == (32, 32, 3)
    assert status.startswith("Done: 30 iterations") and "cpu" in status
    assert {t.name for t in curves.data} >= {"Vanilla DIP", "Controlled", "band 1 (low)", "band 5 (high)"}
    assert len(spectrum.data) == 2
    names = {Path(f).name for f in files}
    panel = outs[0][8]  # the OpenCV baseline: set once, on the first frame; a line on the PSNR plot
    assert panel["label"].startswith("Baseline NL-means · ") and pixels(panel["value"]).shape == (32, 32, 3)
    assert panel["visible"] and baseline == gr.skip()
    (line,) = [t for t in curves.data if t.name == "classical baseline (OpenCV)"]
    assert f"{line.y[0]:.2f} dB" in panel["label"]
    assert names == {
        "result.png",
        "result_vanilla.png",
        "observation.png",
        "baseline.png",
        "log.csv",
        "log.json",
        "config.json",
        "evolution.gif",
    }
    folder = Path(files[0]).parent
    rows = list(csv.DictReader(open(folder / "log.csv")))
    assert {r["run"] for r in rows} == {"vanilla", "controlled"} and rows[-1]["iter"] == "30"
    assert "fbc_5" in rows[0] and "fbc_clean_1" in rows[0]
    config = json.loads((folder / "config.json").read_text())
    assert (
        RunConfig.from_dict(config).lipschitz == lam and config["task"] == "denoise"
    )  # what ran: auto's λ for this image (config.json keeps the number, with its bound)
    gif = Image.open(folder / "evolution.gif")
    assert gif.n_frames >= 3
    log = json.loads((folder / "log.json").read_text())
    assert log["controlled"]["records"][-1]["iter"] == 30
    assert log["baseline"]["method"].startswith("OpenCV NL-means") and log["baseline"]["psnr"] == pytest.approx(
        float(panel["label"].split("· ")[1].split(" dB")[0]), abs=0.01
    )
    assert np.array_equal(pixels(folder / "baseline.png"), pixels(panel["value"]))


def test_two_equal_runs_never_share_an_image_file(tiny_png):
    """Equal runs (same image, seed) have equal frames; each run writes its own files, once, in Gradio's cache
    (served as they are), so one run never rewrites a file another client is downloading."""
    images = [RUN_OUTPUTS.index(k) for k in ("observation", "vanilla", "result", "clean", "baseline")]
    files, last = [], []
    for run in (run_all(image=tiny_png, iterations=20) for _ in range(2)):
        values = [v.get("value") if isinstance(v, dict) else v for frame in run for v in (frame[i] for i in images)]
        files.append({v for v in values if isinstance(v, str)})
        last.append(pixels(run[-1][RUN_OUTPUTS.index("result")]))
    assert len(files[0]) >= 5 and not files[0] & files[1]
    assert all(Path(p).is_relative_to(exports.gradio_temp_dir()) for p in files[0] | files[1])
    assert np.array_equal(*last)  # and the two runs did compute the same thing


def test_single_run_of_an_observed_image(tiny_png):
    outs = run_all(image=tiny_png, iterations=20, compare=False, observed=True)
    first, last = outs[0], outs[-1]
    assert first[3]["visible"] is False  # no clean image
    assert first[1] == {"__type__": "update", "visible": False} and last[1] == gr.skip()
    assert "loss" in last[6] and "dB" not in last[6]
    assert [t.name for t in last[4].data][:1] == ["Result"]


@pytest.mark.parametrize("task", ["jpeg", "inpaint", "sr", "enhance"])
def test_every_task_runs(tiny_png, task):
    outs = run_all(image=tiny_png, task=task, iterations=3, compare=False)
    assert outs[-1][6].startswith("Done")
    assert outs[-1][4].data  # curves drawn


@pytest.mark.outcome
def test_noise_level_auto_stop_ends_a_denoising_run_near_its_best(tiny_png):
    budget = threshold("app_discrepancy", "stop_iter")
    outs = run_all(image=tiny_png, iterations=budget, auto_stop="discrepancy", compare=False, lipschitz=APP_LAMBDA)
    status = outs[-1][6]
    stop, done = (int(x) for x in re.search(r"auto-stop at iteration (\d+), (\d+) iterations", status).groups())
    assert stop <= done < threshold("app_discrepancy", "stop_iter")
    gap = float(re.search(r"best [\d.]+ at \d+, −([\d.]+)\)", status).group(1))  # dB below its best
    assert gap <= threshold("app_discrepancy", "gap_db")  # the margin benchmarks.portability measured
    fig = outs[-1][4]  # the auto-stop panel shows the loss against the noise level, not the ratio
    level = next(t for t in fig.data if t.name == "noise level")
    assert level.y[0] == level.y[1] and 0.9 * (25 / 255) ** 2 < level.y[0] < (25 / 255) ** 2
    loss = next(t for t in fig.data if t.name == "Result loss")
    assert np.mean(loss.y[-3:]) < 1.2 * level.y[0] < 1.2 * loss.y[1]
    assert any("Loss and noise level" in a.text for a in fig.layout.annotations)
    ratio_fig = run_all(image=tiny_png, iterations=20, auto_stop="paper", compare=False)[-1][4]
    assert any(t.name == "Result ratio" for t in ratio_fig.data) and not any(
        t.name == "noise level" for t in ratio_fig.data
    )


def test_stop_keeps_the_result(tiny_png):
    request = SimpleNamespace(session_hash="stop-test")
    gen = events.run_lab(RunForm(tiny_png, iterations=LIMITS.iterations_cap, **TINY), request)
    first = next(gen)
    assert STOPS.active() >= 1
    events.request_stop(request)
    rest = list(gen)
    assert rest[-1][6].startswith("Stopped at iteration")
    assert rest[-1][7] and STOPS.active() == 0
    assert first[6].startswith("iteration 1 /")
    events.request_stop(request)  # nothing to stop: harmless


def test_closing_the_stream_frees_the_run(tiny_png):
    gen = events.run_lab(RunForm(tiny_png, iterations=LIMITS.iterations_cap, **TINY))
    next(gen)
    assert STOPS.active() == 1
    gen.close()
    assert STOPS.active() == 0


def test_auto_stop_and_best_are_marked():
    track = Track("controlled", "Controlled", RunConfig())
    for i, psnr in [(1, 20.0), (10, 25.0), (20, 24.0)]:
        snap = Snapshot(i, None, 0.01, [0.5] * 5, [0.4] * 5, psnr, 0.8, 0.3, 1.0, best_psnr=25.0, best_iter=10)
        track.add(snap)
    snap.stopped, snap.stop_iter, snap.done = True, 18, True
    fig = plots.curves_figure([track], 100, has_clean=True)
    assert any(s.type == "line" and s.x0 == 18 for s in fig.layout.shapes)
    assert any(a.text == "auto-stop 18" for a in fig.layout.annotations)
    star = next(t for t in fig.data if t.mode == "markers+text")
    assert star.x == (10,) and star.y == (25.0,)


# ---------------------------------------------------------------- views


def test_spectrum_view_is_in_observation_space(house64):
    sr = make_task("sr", house64, 4)
    view = SpectrumView(sr, SPECTRUM_SIDE)
    ratio = view(np.clip(house64, 0, 1))
    assert ratio.shape == (16, 16) and 0 <= ratio.min() and ratio.max() <= 1
    assert ratio.mean() > 0.8  # the clean image explains its own downsampled observation
    enh = observed_task("enhance", house64, 2.0)
    assert np.allclose(SpectrumView(enh, SPECTRUM_SIDE)(house64), 1, atol=1e-3)  # x + k(x − f) = x ⇔ f = x


def test_figures_have_shared_axes_and_markers():
    req = parse_request(np.full((32, 32, 3), 0.5, np.float32), iterations=20, **TINY)
    lab = LabRun(req)
    frame = list(frames.stream(lab.stream()))[-1]
    fig = plots.curves_figure(list(lab.tracks.values()), 20, has_clean=True)
    assert fig.layout.xaxis.range == (0, 20) and fig.layout.xaxis3.range == (0, 20)
    assert fig.layout.xaxis4.matches == "x" and fig.layout.yaxis2.type == "log"
    assert sum(1 for t in fig.data if t.mode == "markers+text") == 2  # best-so-far stars, one per run
    spectrum = json.loads(frame.spectrum.plot)  # the live frame's figures go as their JSON (plots.plot_data)
    assert "Spectrum ratio" in spectrum["layout"]["title"]["text"] and len(spectrum["data"]) == 2
    curves = json.loads(frame.curves.plot)
    assert curves["layout"]["xaxis"]["range"] == [0, 20] and curves["layout"]["yaxis2"]["type"] == "log"
    empty = plots.curves_figure([], 100, has_clean=False)
    assert empty.layout.yaxis.type == "log"


def test_side_by_side_strip():
    strip = exports.side_by_side([np.zeros((16, 32, 3)), np.ones((16, 16, 1))], "iteration 5")
    assert strip.dtype == np.uint8 and strip.shape[0] == exports.GIF_SIDE + 22
    assert strip.shape[1] == 3 * exports.GIF_SIDE + 6  # 2:1 and 1:1 panels and one gap


# ---------------------------------------------------------------- widgets


def test_task_change_shows_the_right_widgets():
    level, sr, mask_box = events.on_task_change("sr")
    assert level["visible"] is False and sr["visible"] is True and mask_box["visible"] is False
    level, _, mask_box = events.on_task_change("inpaint")
    assert level["maximum"] < 1 and "value" not in level and mask_box["visible"] is True
    level, lam, auto = events.on_task_input("jpeg")
    assert level["value"] == 10 and "JPEG" in level["label"] and lam == default_control("jpeg")["lipschitz"]
    assert auto == default_control("jpeg")["lipschitz_auto"]
    assert events.on_task_input("inpaint")[1:] == (default_control("inpaint")["lipschitz"], False)
    # on CPU a task whose rule met the bar starts on auto, the slider at the preset's λ (what runs without the box)
    cpu = limits_for("cpu")
    assert [default_control(t, cpu)["lipschitz_auto"] for t in TASKS] == [TASKS[t].auto.met for t in TASKS]
    assert {default_control(t, cpu)["lipschitz"] for t in TASKS} == {1.0}
    assert default_control("jpeg", limits_for("cuda"))["lipschitz_auto"] is False
    # on the paper's scale (CUDA) each task has the paper's λ; on CPU the one control chosen at that scale
    assert default_control("inpaint", limits_for("cuda"))["lipschitz"] == 1.6
    assert default_control("jpeg", limits_for("cuda"))["lipschitz"] == 1.4


def test_prepare_inputs_from_the_editor():
    layer = np.zeros((20, 30, 4), np.uint8)
    layer[5:10, 5:10] = (255, 45, 149, 255)
    level, mask, lam = events.prepare_inputs(
        "inpaint", 0.5, 4, "drawn", {"background": None, "layers": [layer]}, 1, False
    )
    assert level == 0.5 and mask.shape == (20, 30) and (mask == 0).sum() == 25 and mask.max() == 255
    assert events.prepare_inputs("sr", 25, "8", "random", None, 1.4, False) == (8, None, "1.4")
    assert events.prepare_inputs("sr", 25, "8", "random", None, 1.4, True) == (8, None, '"auto"')
    with pytest.raises(gr.Error, match="Paint over"):
        events.prepare_inputs("inpaint", 0.5, 4, "drawn", {"background": None, "layers": [np.zeros_like(layer)]}, 1, 0)


def test_config_round_trip(tmp_path, tiny_png):
    outs = run_all(
        image=tiny_png,
        task="jpeg",
        level=30,
        iterations=3,
        lipschitz=2,
        upsample="gaussian",
        gaussian_sigma=0.7,
        seed=5,
    )
    config = next(f for f in outs[-1][7] if f.endswith("config.json"))
    task, level, sr, lam, auto, up, sigma, iters, seed, stop, compare, observed, side, width, lr = events.load_config(
        config
    )
    assert (task, level, lam, auto, up, sigma, iters, seed, stop) == (
        "jpeg",
        30,
        2,
        False,
        "gaussian",
        0.7,
        3,
        5,
        "off",
    )
    assert compare is True and observed is False and side == 32 and width == 8 and math.isclose(lr, 0.01)
    bad = tmp_path / "bad.json"
    bad.write_text('{"task": "jpeg", "lipschitz": "NaN"}')
    with pytest.raises(gr.Error, match="lipschitz"):
        events.load_config(str(bad))
    bad.write_text("[1, 2")
    with pytest.raises(gr.Error, match="config"):
        events.load_config(str(bad))


def test_examples_and_zone_plate_asset():
    for name, task, kind, _ in EXAMPLES:
        assert (
            (ASSETS / name).is_file()
            and kind in ("clean", "degraded")
            and task in ("denoise", "jpeg", "inpaint", "sr", "enhance")
        )
    shipped = np.asarray(Image.open(ASSETS / "zoneplate.png"), dtype=np.float32) / 255
    assert np.abs(shipped - zone_plate(256)).max() <= 0.5 / 255 + 1e-6


def test_live_runs_mark_the_lessons_as_they_happen(tiny_png):
    """frames.events reads the tracks so far: no control verdict before the end, numbered marks on the curves."""
    from test_replays import synthetic

    lab = LabRun(parse_request(tiny_png, max_side=32, iterations=1000))
    for name, decay in (("vanilla", 4.0), ("controlled", 0.3)):
        c = synthetic(decay=decay, noise_rise=0.5 if name == "vanilla" else 0.0)
        for it, psnr, fbc in zip(c["iter"], c["psnr"], c["fbc"]):
            lab.tracks[name].add(Snapshot(it, None, 0.01, fbc, None, psnr, 0.8, 1.0, 1.0))
    running, done = frames.events(lab.data(done=False)), frames.events(lab.data(done=True))
    assert "control" not in {e.kind for e in running} and {"low_first", "best", "noise"} <= {e.kind for e in running}
    assert [e.kind for e in done if e.kind == "control"] == ["control"] and done[-1].lane == "controlled"
    fig = plots.curves_figure(list(lab.tracks.values()), 1000, True, events=done)
    marks = [a.text for a in fig.layout.annotations if a.text and a.text.startswith("<b>") and len(a.text) == 8]
    assert marks == [f"<b>{plots.event_mark(n)}</b>" for n in range(1, len(done) + 1)]


def test_a_stacked_compare_run_streams_both_networks(tiny_png, monkeypatch):
    """Where the limits stack a compare run (CUDA's default), both tracks stream the same iterations to the end
    as the separate runs do; a run that cannot be stacked (here: a Winograd conv path) runs separately."""
    from dataclasses import replace

    def lab_for(stacked: bool, conv_algo: str = "direct") -> LabRun:
        req = parse_request(tiny_png, max_side=32, iterations=40, width=8)
        req.configs = {n: replace(c, conv_algo=conv_algo) for n, c in req.configs.items()}
        return LabRun(req, limits=replace(LIMITS, stacked=stacked))

    stacked, separate = lab_for(True), lab_for(False)
    assert stacked.stacks() and not separate.stacks() and not lab_for(True, "winograd").stacks()
    for lab in (stacked, separate):
        *_, last = frames.stream(lab.stream())
        assert last.done and last.status.startswith("Done: 40 iterations")
    for name in ("vanilla", "controlled"):
        assert stacked.tracks[name].column("iter") == separate.tracks[name].column("iter")
    assert limits_for("cuda").stacked and not limits_for("cpu").stacked
    monkeypatch.setenv("SPECTRAL_BIAS_LAB_STACKED", "1")
    assert limits_for("cpu").stacked


# ---------------------------------------------------------------- runs apart from their views


def test_the_session_builds_no_view_and_no_view_reads_the_session():
    """demo.session yields plain records (demo.records); frames, plots and exports turn them into what is shown."""
    import ast

    def imports(module: str) -> set[str]:
        tree = ast.parse((Path(__file__).resolve().parent.parent / "demo" / f"{module}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                found |= {node.module or ""} | {f"{node.module or ''}.{a.name}".lstrip(".") for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        return found

    views = {"frames", "plots", "exports", "plotly", "plotly.graph_objects"}
    assert not imports("session") & views
    for view in ("frames", "plots", "exports", "records"):
        assert not {m for m in imports(view) if m.split(".")[0] == "session" or m.endswith("session")}, view


def test_a_per_layer_lambda_list_runs_and_names_its_layers(tiny_png):
    """A per-layer λ (and σ) list reaches LabRun as RunConfig allows it: the label lists the values."""
    from dataclasses import replace

    from dip_core.config import convs

    req = parse_request(tiny_png, iterations=3, **TINY)
    c = req.configs["controlled"]
    lams, sigmas = [1.0] * (convs(c.depth) - 1) + [1.5], [0.5] * c.depth
    req.configs["controlled"] = replace(c, lipschitz=lams, upsample="gaussian", gaussian_sigma=sigmas)
    lab = LabRun(req)
    label = (
        "Controlled (λ " + "/".join(["1"] * (len(lams) - 1) + ["1.5"]) + ", Gaussian σ " + "/".join(["0.5"] * c.depth)
    )
    assert lab.tracks["controlled"].label == label + ")"
    *_, last = frames.stream(lab.stream())
    assert last.done and last.captions["controlled"].startswith(label + ") · PSNR ")
    assert lab.tracks["vanilla"].label == "Vanilla DIP (λ 0, bilinear)"
    assert lab.tracks["controlled"].short == "Controlled"  # the name the curves, spectra and lessons use
    assert run_short("controlled", False) == "Result"  # a single run


def test_a_run_ended_by_a_non_finite_loss_logs_each_iteration_once(tiny_png):
    """The engine ends such a run with its last good snapshot again (marked done, with the message): the track
    keeps one row per iteration, so the log, the CSV and the curves have no repeated last point."""
    # in a thread of this process (not a worker process): the test spoils the task the steps read, as they run
    lab = LabRun(parse_request(tiny_png, iterations=100, compare=False, **TINY), limits=replace(LIMITS, worker=False))
    for _ in lab.stream():
        lab.request.task.observation.fill_(float("inf"))
    track = lab.tracks["controlled"]
    iters = track.column("iter")
    assert track.last.message and "non-finite" in track.last.message
    assert len(iters) >= 1 and iters == sorted(set(iters)) and iters[-1] == track.last.iter
    rows = exports.log_rows(lab.data(done=True).tracks)
    assert len(rows) == len(iters)


def test_each_run_image_says_what_it_is_at_the_shown_iteration(tiny_png):
    """The captions under the two runs' images name the run, its λ / σ, and its PSNR at the iteration shown (the loss
    without a clean image); they come after RUN_OUTPUTS, which API clients receive unchanged."""
    outs = run_all(image=tiny_png, iterations=20)
    n = len(RUN_OUTPUTS)
    first, last = dict(zip(CAPTION_OUTPUTS, outs[0][n:])), dict(zip(CAPTION_OUTPUTS, outs[-1][n:]))
    assert all(len(o) == n + len(CAPTION_OUTPUTS) for o in outs)
    assert first["vanilla_caption"]["visible"] and first["vanilla_caption"]["value"].startswith(
        "Vanilla DIP (λ 0, bilinear) · PSNR "
    )
    lam = default_lambda(tiny_png)
    assert re.fullmatch(
        rf"Controlled \(λ {lam:g}, bilinear\) · PSNR \d+\.\d\d dB at iteration 20", last["result_caption"]
    )
    psnr = float(last["vanilla_caption"].split("PSNR ")[1].split(" dB")[0])
    assert f"vanilla {psnr:.2f} dB" in outs[-1][RUN_OUTPUTS.index("status")]  # the status line agrees
    single = run_all(image=tiny_png, iterations=10, compare=False, observed=True)
    assert single[0][n] == {"__type__": "update", "visible": False}
    assert re.fullmatch(r"Result \(λ [\d.]+, bilinear\) · loss \S+ at iteration 10", single[-1][n + 1])


def test_the_networks_step_on_while_the_caller_draws_and_closing_ends_the_run(tiny_png):
    """LabRun.stream() steps in a thread of its own: while the caller is busy with one update (drawing, sending)
    the run goes on, updates it had no time for are replaced by the latest, and closing the stream ends the run."""
    import threading
    import time

    lab = LabRun(parse_request(tiny_png, iterations=5000, compare=True, **TINY))
    updates = lab.stream()
    first = next(updates)
    time.sleep(2.0)  # the caller busy with the first update: the steps went on (they used to wait for it)
    assert lab.current_iter > first.iteration
    second = next(updates)
    assert second.iteration > first.iteration and lab.rounds > 2  # the rounds in between were not queued
    updates.close()  # the caller gone: the run ends at its next step, its thread with it
    assert lab.abandoned and lab.ended is not None and lab.current_iter < 5000
    assert not [t for t in threading.enumerate() if t.name == "lab-run-steps"]


@pytest.mark.parametrize("worker", [False, True])
def test_an_error_while_stepping_reaches_the_caller(tiny_png, monkeypatch, worker):
    """What the stepping thread (or worker process) raises is raised where the stream is read (the event's one-line
    error path)."""
    import functools
    import operator

    lab = LabRun(parse_request(tiny_png, iterations=50, compare=False, **TINY), limits=replace(LIMITS, worker=worker))

    def broken():
        raise RuntimeError("the step broke")
        yield  # a generator, as steps() is

    # a worker process gets the run's state, so its broken steps must be picklable there
    lab.steps = functools.partial(operator.truediv, 1, 0) if worker else broken
    with pytest.raises(ZeroDivisionError if worker else RuntimeError, match="division by zero|the step broke"):
        list(lab.stream())
    if worker:  # the worker served the error and is kept for the next run
        *_, last = LabRun(parse_request(tiny_png, iterations=20, compare=False, **TINY)).stream()
        assert last.done and last.iteration == 20


def test_lesson_marks_close_together_go_a_row_lower():
    """On a 3000-step axis marks at 300 and 330 would overlap: the second goes a row down; one at 900 is back on top."""
    from dip_core.lesson import Event

    layout = {"shapes": [], "annotations": []}
    marks = [
        Event("low_first", 300, "vanilla", "a"),
        Event("best", 330, "vanilla", "b"),
        Event("noise", 900, "vanilla", "c"),
    ]
    plots.mark_events(layout, marks, None, span=3000)
    assert [a["yshift"] for a in layout["annotations"]] == [0, -16, 0]
    layout = {"shapes": [], "annotations": []}
    crowded = [Event(k, t, "vanilla", "a") for k, t in (("low_first", 300), ("best", 310), ("noise", 320))]
    plots.mark_events(layout, crowded, None, span=3000)  # three within the gap: three rows
    assert [a["yshift"] for a in layout["annotations"]] == [0, -16, -32]


def test_curve_values_reach_the_figure_as_plain_floats_or_none():
    """plots._list, converted at once: the values one by one would give the same list (finite → float, else None)."""
    values = [1.5, None, float("nan"), float("inf"), -float("inf"), np.float32(0.1), np.int64(3), 0.0]
    one_by_one = [None if v is None or not np.isfinite(v) else float(v) for v in values]
    for given in (values, np.array([v if v is not None else np.nan for v in values], dtype=np.float64), []):
        got = plots._list(given)
        expected = one_by_one if len(given) else []
        assert got == expected and all(type(g) is type(e) for g, e in zip(got, expected))


def test_a_worker_process_that_dies_mid_run_ends_the_run_with_one_line_and_the_next_run_gets_another(tiny_png):
    """Killed (the out-of-memory killer, say) while it steps: the stream ends with the worker's one line, the run's
    thread ends, and the next run starts a worker of its own."""
    import multiprocessing
    import signal

    from demo.worker import LOST, WorkerLost

    lab = LabRun(parse_request(tiny_png, iterations=5000, compare=False, **TINY))
    updates = lab.stream()
    next(updates)
    workers = [p for p in multiprocessing.active_children() if p.name == "lab-run-worker"]
    assert workers  # the run steps in a worker process, not here
    for p in workers:
        os.kill(p.pid, signal.SIGKILL)
    with pytest.raises(WorkerLost, match=LOST):
        list(updates)
    *_, last = LabRun(parse_request(tiny_png, iterations=20, compare=False, **TINY)).stream()
    assert last.done and last.iteration == 20


def test_a_stop_that_crosses_its_runs_end_leaves_the_worker_serving(tiny_png):
    """A Stop (or "reader gone") can reach the worker just after its run ended: the worker drops it, stays up, and
    runs the next run whole."""
    from demo.worker import WORKERS

    worker = WORKERS.take()
    pid = worker.process.pid
    worker.conn.send("stop")
    worker.conn.send("abandon")
    WORKERS.give(worker)
    *_, last = LabRun(parse_request(tiny_png, iterations=20, compare=False, **TINY)).stream()
    assert last.done and last.iteration == 20 and last.ending.reason == "complete"
    assert [w.process.pid for w in WORKERS.idle] == [pid] and WORKERS.idle[0].alive()


def test_the_worker_process_runs_at_the_niceness_it_is_given(monkeypatch):
    """SPECTRAL_BIAS_LAB_WORKER_NICE (default 10; the suite's 0, tests/conftest.py): the worker lowers its own
    priority by that much when it starts."""
    from demo.worker import Worker

    monkeypatch.setenv("SPECTRAL_BIAS_LAB_WORKER_NICE", "3")  # a spawned worker reads it as it imports demo.worker
    worker = Worker()
    try:
        assert worker.wait_ready()
        assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)
    finally:
        worker.close()
