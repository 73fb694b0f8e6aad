"""The real app launched in-process and driven through gradio_client: streaming, cancel, stop, bad input."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import wait_for
from outcomes import APP_LAMBDA, threshold
from PIL import Image
from test_bad_input import animated, declared_png, exif_rotated, photo, png
from test_replays import BAD_REPLAY_ROWS

from demo.form import RunForm
from demo.session import STOPS
from dip_core.io import to_uint8

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
TINY = dict(max_side=32, width=8, lr=0.01)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from app import make_app
    from demo.ui import launch_options

    demo = make_app()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    yield url
    demo.close()


@pytest.fixture()
def client(app_url, tmp_path):
    c = Client(app_url, verbose=False, download_files=str(tmp_path))
    yield c
    c.close()


def test_the_opencv_baseline_comes_last_and_is_drawn_on_the_psnr_plot(client, tiny_png, tmp_path):
    job = client.submit(image=handle_file(tiny_png), iterations=20, compare=False, api_name="/run", **TINY)
    first, *_, final = list(job)
    assert len(first) == len(final) == 9 and final[6].startswith("Done: 20 iterations")  # the others keep their place
    panel = first[8]
    assert re.fullmatch(r"Baseline NL-means · [\d.]+ dB", panel["label"])
    assert np.asarray(Image.open(panel["value"])).shape == (32, 32, 3)
    traces = json.loads(final[4]["plot"])["data"]
    (line,) = [t for t in traces if t.get("name") == "classical baseline (OpenCV)"]
    assert f"{line['y'][0]:.2f} dB" in panel["label"]
    grey = tmp_path / "grey.png"
    Image.open(tiny_png).convert("L").save(grey)
    first, *_ = list(
        client.submit(
            image=handle_file(str(grey)),
            task="jpeg",
            observed=True,
            iterations=10,
            compare=False,
            api_name="/run",
            **TINY,
        )
    )
    assert first[8]["label"] == "Baseline bilateral filter"  # no clean image: no dB
    assert Image.open(first[8]["value"]).mode == "L"


def test_api_parameters_have_defaults(client):
    api = client.view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/run"]["parameters"]}
    expected = ["image", "task", "level", "lipschitz", "upsample", "gaussian_sigma", "iterations", "seed"]
    assert list(params)[: len(expected)] == expected
    assert list(params) == list(RunForm.names())  # the form's fields, by name and in order
    assert not params["image"]["parameter_has_default"]
    assert all(params[name]["parameter_has_default"] for name in RunForm.names()[1:])
    assert params["task"]["parameter_default"] == "denoise" and params["level"]["parameter_default"] is None


def test_run_streams_partial_updates(client, tiny_png):
    job = client.submit(image=handle_file(tiny_png), iterations=30, api_name="/run", **TINY)
    partials = [out for out in job]
    assert job.status().success
    *streamed, final = job.outputs()
    assert len(streamed) >= 3
    statuses = [out[6] for out in streamed]
    assert statuses[0].startswith("iteration 1 / 30") and all("steps/s" in s for s in statuses)
    assert final[6].startswith("Done: 30 iterations")
    assert final[2].endswith(".png") and final[4]["type"] == "plotly"
    assert {os.path.basename(f) for f in final[7]} >= {"result.png", "log.csv", "config.json", "evolution.gif"}
    assert len(partials) >= 4


def test_cancel_stops_the_run_on_the_server(client, tiny_png):
    job = client.submit(image=handle_file(tiny_png), iterations=5000, api_name="/run", **TINY)
    assert wait_for(lambda: len(job.outputs()) >= 2, 60)
    assert STOPS.active() == 1
    job.cancel()
    n = len(job.outputs())
    assert wait_for(lambda: STOPS.active() == 0, 15), "the server-side run did not end after cancel"
    time.sleep(0.5)
    assert len(job.outputs()) <= n + 1 and not job.outputs()[-1][6].startswith("Done")


def test_stop_endpoint_keeps_the_result(client, tiny_png):
    job = client.submit(image=handle_file(tiny_png), iterations=5000, api_name="/run", **TINY)
    assert wait_for(lambda: len(job.outputs()) >= 2, 60)
    client.predict(api_name="/stop")
    final = job.result(timeout=30)
    assert final[6].startswith("Stopped at iteration") and final[7]
    assert STOPS.active() == 0


@pytest.mark.outcome
def test_noise_level_auto_stop_through_the_api(client, tiny_png):
    budget = threshold("app_discrepancy", "stop_iter")
    final = client.predict(
        image=handle_file(tiny_png),
        iterations=budget,
        auto_stop="discrepancy",
        compare=False,
        api_name="/run",
        lipschitz=APP_LAMBDA,
        **TINY,
    )
    assert final[6].startswith("Done: auto-stop at iteration") and f"{budget} iterations" not in final[6]
    assert any(t.get("name") == "noise level" for t in json.loads(final[4]["plot"])["data"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(iterations=10**7), "iterations must be a number between 10 and 5000"),  # the slider's range
        (dict(task="sr", level=3), "factor"),
        (dict(upsample="bicubic"), "upsample must be one of bilinear, nearest, gaussian, got 'bicubic'"),
        (dict(task="sr", level=3.5), "factor"),
        (dict(seed=2**40), "seed"),
        (dict(task="jpeg", auto_stop="discrepancy"), "needs a known noise level"),
    ],
)
def test_bad_parameters_are_app_errors(client, tiny_png, kwargs, message):
    with pytest.raises(AppError, match=message) as err:
        client.predict(image=handle_file(tiny_png), api_name="/run", **{**TINY, **kwargs})
    assert "\n" not in str(err.value).strip()


def test_corrupt_upload_is_an_app_error(client, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(AppError, match="image") as err:
        client.predict(image=handle_file(str(bad)), api_name="/run", **TINY)
    assert "\n" not in str(err.value).strip()


def raw_run(app_url: str, image: str, values: dict[int, object]) -> str:
    """Call /run over plain HTTP (positional data, ``values`` replacing some) and return its event stream."""
    with open(image, "rb") as fh:
        path = httpx.post(f"{app_url}gradio_api/upload", files={"files": fh}).json()[0]
    data = [
        {"path": path, "meta": {"_type": "gradio.FileData"}},
        "denoise",
        None,
        1.4,
        "bilinear",
        0.5,
        20,
        0,
        "off",
        True,
        False,
        None,
        32,
        8,
        0.01,
    ]
    for field, value in values.items():
        data[field] = value
    body = json.dumps({"data": data})  # allow_nan: a literal NaN goes on the wire
    event = httpx.post(f"{app_url}gradio_api/call/run", content=body, headers={"content-type": "application/json"})
    return httpx.get(f"{app_url}gradio_api/call/run/{event.json()['event_id']}", timeout=60).text


@pytest.mark.parametrize("field", [3, 5, 6])  # lipschitz, gaussian_sigma, iterations
def test_nan_through_the_rest_api_is_refused(app_url, tiny_png, field):
    """gradio_client cannot send NaN (strict JSON), but a raw HTTP client can."""
    stream = raw_run(app_url, tiny_png, {field: math.nan})
    assert "event: error" in stream and "between" in stream, stream[-300:]


# ---------------------------------------------------------------- every row of docs/bad-input.md, in the app

EXPECT_GREY, EXPECT_RGB = (32, 48), (32, 48, 3)


def app_file_case(row: str, make, expected) -> tuple:
    """A docs/bad-input.md row whose input is the uploaded file: ``expected`` an error text or the result's shape."""
    return row, make, expected


APP_FILES = [
    app_file_case("truncated PNG", lambda: png(photo())[:300], "image data is corrupt or truncated"),
    app_file_case("text file named .png", lambda: b"hello, this is text", "not a readable image file"),
    app_file_case("empty file", lambda: b"", "the file is empty"),
    app_file_case("1×1 image", lambda: png(photo(1, 1)), "image is 1×1 pixels; the smallest supported side is 16"),
    app_file_case(
        "image smaller than the network minimum (e.g. 10×12)",
        lambda: png(photo(10, 12)),
        "image is 10×12 pixels; the smallest supported side is 16",
    ),
    app_file_case("huge image (20000×20000)", lambda: declared_png(20000, 20000), "too large"),
    app_file_case("decompression bomb (declared 60000×60000)", lambda: declared_png(60000, 60000), "too large"),
    app_file_case("RGBA", lambda: png(photo().convert("RGBA")), EXPECT_RGB),
    app_file_case("LA", lambda: png(photo().convert("LA")), EXPECT_GREY),
    app_file_case("palette (P)", lambda: png(photo().convert("P")), EXPECT_RGB),
    app_file_case("CMYK", lambda: png(photo().convert("CMYK"), "TIFF"), EXPECT_RGB),
    app_file_case(
        "16-bit grayscale",
        lambda: png(Image.fromarray(np.asarray(photo().convert("L")).astype(np.uint16) * 257)),
        EXPECT_GREY,
    ),
    app_file_case(
        "float TIFF",
        lambda: png(Image.fromarray(np.asarray(photo().convert("L"), np.float32) / 255), "TIFF"),
        EXPECT_GREY,
    ),
    app_file_case("grayscale (L)", lambda: png(photo().convert("L")), EXPECT_GREY),
    app_file_case("EXIF-rotated JPEG", exif_rotated, (48, 32, 3)),
    app_file_case("animated GIF", animated, (32, 32, 3)),  # a GIF frame is a palette image: RGB
    app_file_case(
        "long thin image (300×17)",
        lambda: png(photo(300, 17)),
        "image is 300×17 pixels: brought to 48 px on its long side, its short side would be under 16 px",
    ),
    app_file_case(
        "NaN in the image data",
        lambda: png(Image.fromarray(np.full((32, 48), np.nan, np.float32)), "TIFF"),
        "image contains NaN or infinite",
    ),
]
APP_FAST = dict(max_side=48, width=8, lr=0.01, iterations=10)  # the slider's minimum
SUFFIX = {b"II*\x00": ".tif", b"\xff\xd8\xff": ".jpg", b"GIF8": ".gif"}


def upload_file(tmp_path, data: bytes, name: str = "upload") -> str:
    suffix = next((s for magic, s in SUFFIX.items() if data.startswith(magic)), ".png")
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    return str(path)


def assert_one_line_error(err: pytest.ExceptionInfo, expected: str) -> None:
    message = str(err.value).strip()
    assert expected in message and "\n" not in message, message
    assert not any(raw in message for raw in ("Traceback", "Cannot handle this data type", "PIL", "numpy")), message


@pytest.mark.parametrize("task", ["denoise", "jpeg", "inpaint", "sr", "enhance"])
@pytest.mark.parametrize(("row", "make", "expected"), APP_FILES, ids=[c[0] for c in APP_FILES])
def test_every_image_the_cli_takes_runs_in_the_app(client, tmp_path, row, make, expected, task):
    """Each file row of docs/bad-input.md × each task through the real /run endpoint (compare mode on for
    every other task): errors are one line of ours; conversions run and show grey images as grey."""
    image = handle_file(upload_file(tmp_path, make()))
    compare = task in ("denoise", "inpaint", "enhance")
    if isinstance(expected, str):
        with pytest.raises(AppError) as err:
            client.predict(image=image, task=task, compare=compare, api_name="/run", **APP_FAST)
        assert_one_line_error(err, expected)
        return
    final = client.predict(image=image, task=task, compare=compare, api_name="/run", **APP_FAST)
    assert final[6].startswith("Done: 10 iterations"), final[6]
    shown = [final[2], final[1]] if compare else [final[2]]
    for path in shown:
        arr = np.asarray(Image.open(path))
        assert arr.shape == expected, (path, arr.shape)  # grey stays one channel, shown as a grey PNG
    result = np.asarray(Image.open(next(f for f in final[7] if os.path.basename(f) == "result.png")))
    assert result.shape == expected


def test_a_grey_observed_image_runs_in_the_app(client, tmp_path):
    grey = photo().convert("L")
    final = client.predict(
        image=handle_file(upload_file(tmp_path, png(grey))), observed=True, api_name="/run", **APP_FAST
    )
    assert final[6].startswith("Done") and np.asarray(Image.open(final[2])).shape == EXPECT_GREY


@pytest.mark.parametrize(
    ("row", "kwargs", "expected"),
    [
        (
            "negative level",
            dict(task="jpeg", level=-5),
            "JPEG quality (1-100) must be a number between 1 and 100, got -5",
        ),
        (
            "negative Gaussian σ",
            dict(upsample="gaussian", gaussian_sigma=-1.0),
            "gaussian_sigma must be a number between 0 and 3, got -1",
        ),
        (
            "λ as a word other than `auto` (`automatic`)",
            dict(lipschitz="automatic"),
            "lipschitz must be a number or auto",
        ),
        ("absurd iterations (10⁹)", dict(iterations=10**9), "iterations must be a number between 10 and 5000"),
        ("negative seed", dict(seed=-3), "seed must be a number between 0 and"),
        (
            "noise-level auto-stop on a task without a noise level (JPEG, inpainting, SR, enhancement, or σ = 0)",
            dict(task="sr", auto_stop="discrepancy"),
            "needs a known noise level",
        ),
    ],
)
def test_parameter_rows_are_app_errors(client, tiny_png, row, kwargs, expected):
    with pytest.raises(AppError) as err:
        client.predict(image=handle_file(tiny_png), api_name="/run", **{**TINY, "iterations": 10, **kwargs})
    assert_one_line_error(err, expected)


@pytest.mark.parametrize(
    ("row", "field", "value", "expected"),
    [
        ("NaN level", 2, math.nan, "must be a number between 0 and 255, got nan"),
        ("infinite λ", 3, math.inf, "lipschitz must be a number between 0 and 5, got inf"),
    ],
)
def test_non_finite_rows_through_the_rest_api(app_url, tiny_png, row, field, value, expected):
    stream = raw_run(app_url, tiny_png, {field: value})
    assert "event: error" in stream and expected in stream, stream[-300:]


@pytest.mark.parametrize("row", ["mask of the wrong size", "mask that is not binary"])
def test_mask_rows_in_the_app(client, tmp_path, tiny_png, row):
    """The app resizes an uploaded mask to the image (the editor's mask can differ in size) and thresholds it."""
    if row == "mask of the wrong size":
        mask = np.full((20, 20), 255, np.uint8)
        mask[5:10, 5:10] = 0
    else:
        mask = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    final = client.predict(
        image=handle_file(tiny_png),
        task="inpaint",
        mask=handle_file(upload_file(tmp_path, png(Image.fromarray(mask)), "mask")),
        api_name="/run",
        **{**TINY, "iterations": 10},
    )
    assert final[6].startswith("Done: 10 iterations") and "drawn mask" not in final[6]


def test_a_stated_sigma_far_from_the_noise_is_a_warning_in_the_app(client, tmp_path, house64):
    from dip_core import make_task
    from dip_core.tasks import to_image

    noisy = upload_file(
        tmp_path, png(Image.fromarray(to_uint8(to_image(make_task("denoise", house64, 25).observation))))
    )
    job = client.submit(
        image=handle_file(noisy),
        observed=True,
        level=60,
        compare=False,
        api_name="/run",
        **{**TINY, "max_side": 64, "iterations": 10},
    )
    assert job.result(timeout=60)[6].startswith("Done")
    updates, logs = job.communicator.updates, []  # not iterated: every status update, with gr.Warning's logs
    while not updates.empty():
        update = updates.get_nowait()
        logs += [update.log] if getattr(update, "log", None) else []
    assert any(level == "warning" and "not the 60 set" in text for text, level in logs), logs


def test_a_non_finite_loss_ends_the_app_run_with_one_line(tiny_png):
    from dataclasses import replace

    from demo.exports import FrameFiles
    from demo.frames import stream
    from demo.inputs import parse_request
    from demo.live import frame_outputs
    from demo.session import LabRun
    from demo.settings import LIMITS

    # in a thread of this process (not a worker process): the test spoils the task the steps read, as they run
    lab = LabRun(parse_request(tiny_png, iterations=100, compare=False, **TINY), limits=replace(LIMITS, worker=False))
    frames, files = [], FrameFiles()
    for frame in stream(lab.stream()):
        frames.append(frame_outputs(frame, files, first=not frames))
        lab.request.task.observation.fill_(float("inf"))
    assert frames[-1]["status"].startswith("Ended: stopped at iteration") and "non-finite" in frames[-1]["status"]
    last = lab.tracks["controlled"].last.image  # what the run keeps and shows: its last finite snapshot
    assert np.isfinite(last).all() and np.array_equal(np.asarray(Image.open(frames[-1]["result"])), to_uint8(last))


def test_without_opencv_the_run_goes_on_and_the_baseline_panel_stays_hidden(client, tiny_png, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # the server runs in this process: import cv2 now fails there
    first, *_, final = list(
        client.submit(image=handle_file(tiny_png), iterations=10, compare=False, api_name="/run", **TINY)
    )
    assert final[6].startswith("Done: 10 iterations")
    assert first[8]["visible"] is False and first[8]["label"] == "Baseline unavailable"
    assert not any(t.get("name") == "classical baseline (OpenCV)" for t in json.loads(final[4]["plot"])["data"])


def test_every_row_of_the_doc_table_has_an_app_case():
    from test_bad_input import DOC
    from test_links import LINK_ROWS
    from test_public_space import PUBLIC_ROWS

    app_tables = DOC.read_text().split("## Sweeps on a Ray cluster")[0]  # that last table is the CLI's only
    rows = [m.group(1).strip() for m in re.finditer(r"^\| ([^|]+) \|", app_tables, re.M)]
    rows = [r for r in rows if r not in ("input", "---")]
    covered = {c[0] for c in APP_FILES} | {
        "negative level",
        "negative Gaussian σ",
        "λ as a word other than `auto` (`automatic`)",
        "absurd iterations (10⁹)",
        "negative seed",
        "noise-level auto-stop on a task without a noise level (JPEG, inpainting, SR, enhancement, or σ = 0)",
        "NaN level",
        "infinite λ",
        "mask of the wrong size",
        "mask that is not binary",
        "already-noisy image whose stated σ is far from its noise (e.g. σ 60 set, 25 present)",
        "loss becomes NaN or infinite mid-run",
        "OpenCV not installed (the classical baseline cannot run)",
        *BAD_REPLAY_ROWS,  # the replay endpoint's rows: tests/test_replays.py
        *PUBLIC_ROWS,  # the public Space's rows: tests/test_public_space.py
        *LINK_ROWS,  # a link's parameters: the page-load event's notice (tests/test_links.py, its browser test)
    }
    assert sorted(rows) == sorted(covered)


@pytest.mark.parametrize("task", ["jpeg", "denoise"])
def test_lambda_auto_through_the_api_says_what_it_runs(client, tiny_png, task):
    """``lipschitz="auto"``: the task's rule runs (a learned bound's path on the curves) or its fixed λ, and one
    warning line says which (dip_core.bound.auto_control)."""
    from dip_core.tasks import spec_of

    job = client.submit(
        image=handle_file(tiny_png), task=task, lipschitz="auto", iterations=20, compare=False, api_name="/run", **TINY
    )
    final = job.result(timeout=120)
    assert final[6].startswith("Done")
    updates, logs = job.communicator.updates, []
    while not updates.empty():
        update = updates.get_nowait()
        logs += [update.log] if getattr(update, "log", None) else []
    assert any(level == "warning" and text.startswith("λ auto") for text, level in logs), logs
    traces = [t.get("name", "") for t in json.loads(final[4]["plot"])["data"]]
    learned = spec_of(task).auto.rule == "learned"
    assert any("λ (learned" in name for name in traces) == learned
    config = json.loads(open(next(f for f in final[7] if f.endswith("config.json"))).read())
    assert config["bound"] == ("learned" if learned else "fixed") and isinstance(config["lipschitz"], float)
