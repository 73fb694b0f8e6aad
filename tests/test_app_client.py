"""The real app launched in-process and driven through gradio_client: streaming, cancel, stop, bad input."""

from __future__ import annotations

import json
import math
import os
import time

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import wait_for

from demo.session import STOPS
from dip_core.io import save_png

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


@pytest.fixture(scope="module")
def tiny_png(tmp_path_factory, house64) -> str:
    path = tmp_path_factory.mktemp("client") / "tiny.png"
    save_png(house64[:32, :32], path)
    return str(path)


def test_api_parameters_have_defaults(client):
    api = client.view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/run"]["parameters"]}
    expected = ["image", "task", "level", "lipschitz", "upsample", "gaussian_sigma", "iterations", "seed"]
    assert list(params)[: len(expected)] == expected
    assert not params["image"]["parameter_has_default"]
    assert all(params[name]["parameter_has_default"] for name in expected[1:])
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


def test_noise_level_auto_stop_through_the_api(client, tiny_png):
    final = client.predict(
        image=handle_file(tiny_png), iterations=1500, auto_stop="discrepancy", compare=False, api_name="/run", **TINY
    )
    assert final[6].startswith("Done: auto-stop at iteration") and "1500 iterations" not in final[6]
    assert any(t.get("name") == "noise level" for t in json.loads(final[4]["plot"])["data"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(iterations=10**7), "greater than maximum value 5000"),  # gradio checks slider bounds itself
        (dict(task="sr", level=3), "factor"),
        (dict(upsample="bicubic"), "not in the list of choices"),  # checked by gr.Radio
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


@pytest.mark.parametrize("field", [3, 5, 6])  # lipschitz, gaussian_sigma, iterations
def test_nan_through_the_rest_api_is_refused(app_url, tiny_png, field):
    """gradio_client cannot send NaN (strict JSON), but a raw HTTP client can."""
    with open(tiny_png, "rb") as fh:
        path = httpx.post(f"{app_url}gradio_api/upload", files={"files": fh}).json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "denoise", None, 1.4, "bilinear", 0.5, 20, 0, "off",
            True, False, None, 32, 8, 0.01]  # fmt: skip
    data[field] = math.nan
    body = json.dumps({"data": data})  # allow_nan: the literal NaN goes on the wire
    event = httpx.post(f"{app_url}gradio_api/call/run", content=body, headers={"content-type": "application/json"})
    stream = httpx.get(f"{app_url}gradio_api/call/run/{event.json()['event_id']}", timeout=60).text
    assert "event: error" in stream and "between" in stream, stream[-300:]
