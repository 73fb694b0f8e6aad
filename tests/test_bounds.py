"""Every input bounded (issue 32, "a class of forty at once"): both sides of every image ≤ max_side (a 20000×16 PNG
refused from its header), super-resolution's result too, the GIF in a fixed box, the decode cache in bytes, images
sent as a URL or data URL, the mask editor's component server, and an upload Gradio deleted meanwhile."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio.data_classes import FileData, ImageData
from PIL import Image, ImageFile
from test_bad_input import declared_png, png  # the same files as the bad-input table's

import demo.guards as guards
import demo.inputs as inputs
from demo import exports, frames
from demo.exports import GIF_BOX, gradio_temp_dir, side_by_side, write_downloads
from demo.guards import EDITOR_MAX_SIDE
from demo.inputs import (
    LOW_RES_MIN_SIDE,
    ByteLRU,
    parse_request,
    read_image,
    read_mask,
    stale_upload,
)
from demo.session import LabRun
from dip_core import InputError, observed_task
from dip_core.io import MIN_SIDE, image_size, load_image, resize_max_side

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(width=8, lr=0.01, iterations=10)
THIN = (
    "image is 20000×16 pixels: brought to 128 px on its long side, its short side would be under 16 px; "
    "crop it to an aspect ratio of at most 8:1"
)
STALE = "the uploaded image is no longer on the server (uploads are kept for an hour): upload it again"

#: docs/bad-input.md's rows for these bounds (the last table), each tested below
BOUND_ROWS = (
    "very long thin image (20000×16, a 1 KB PNG)",
    "an already-degraded image for ×8 super-resolution with a maximum side under 64",
    "an upload Gradio has deleted (Run pressed over an hour later)",
    "an image given by a URL",
    "an image sent as a data URL over 20 MB, over 50 megapixels or not base64",
    "the mask editor's component server: another type, a layer index of 2×10⁷, a long id, no file",
    "the mask editor's component server: an image over 20 MB or over the editor's side",
    "the mask editor's edits never sent to Run",
    "a mask editor image over its bounds, or unreadable, sent to Run",
)


@contextlib.contextmanager
def refused(pattern: str) -> Iterator[None]:
    """Expects a ``gr.Error`` whose message (one line) matches ``pattern``."""
    import gradio as gr

    with pytest.raises(gr.Error) as err:
        yield
    assert re.match(pattern, err.value.message) and "\n" not in err.value.message, err.value.message


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


# ---------------------------------------------------------------- 1. both sides ≤ max_side


@pytest.fixture
def loads(monkeypatch):
    """Records every time PIL decodes an image's pixels."""
    seen, real = [], ImageFile.ImageFile.load

    def spy(self):
        seen.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return seen


def test_a_20000_by_16_png_is_refused_from_its_header(tmp_path, loads):
    path = tmp_path / "strip.png"
    Image.new("RGB", (20000, 16), (10, 20, 30)).save(path)
    assert path.stat().st_size < 2000  # about 1 KB on disk: 20000×16×3 floats (3.8 MB) once decoded
    for call in (lambda: load_image(path, 128), lambda: read_image(str(path), 128), lambda: image_size(path, 128)):
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == THIN
    assert loads == []  # nothing decoded: refused from the header
    with pytest.raises(InputError, match=r"^image is 20000×16 pixels: brought to 128 px"):
        parse_request(str(path), max_side=128, **TINY)


@pytest.mark.parametrize(
    ("w", "h", "max_side", "expected"),
    [
        (400, 100, 128, (32, 128)),  # scaled down, aspect kept
        (128, 16, 128, (16, 128)),  # already fits: unchanged
        (100, 130, 128, (128, 98)),
        (1024, 130, 128, (16, 128)),  # 7.9:1 still fits 8:1
        (129, 16, 128, (16, 128)),
        (20, 20, 64, (20, 20)),  # small: unchanged
        (2000, 32, 1024, (16, 1024)),  # 62.5:1: refused at 128 px, fits at 1024 px (64:1)
    ],
)
def test_both_sides_end_within_max_side(w, h, max_side, expected, tmp_path):
    path = tmp_path / "a.png"
    photo(w, h).save(path)
    arr, _ = load_image(path, max_side)
    assert arr.shape[:2] == expected and max(arr.shape[:2]) <= max_side and min(arr.shape[:2]) >= MIN_SIDE
    assert resize_max_side(load_image(path)[0], max_side, MIN_SIDE)[0].shape[:2] == expected


@pytest.mark.parametrize(("w", "h"), [(1100, 130), (300, 17), (2000, 200)])
def test_too_thin_for_max_side_is_refused_and_says_the_numbers(w, h, tmp_path):
    path = tmp_path / "a.png"
    photo(w, h).save(path)
    with pytest.raises(InputError) as err:
        load_image(path, 128)
    assert str(err.value).startswith(f"image is {w}×{h} pixels: brought to 128 px") and "at most 8:1" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_cli_max_side_refuses_a_thin_image_in_one_line(tmp_path, capsys):
    from dip_core.cli import main

    Image.new("RGB", (20000, 16)).save(tmp_path / "strip.png")
    out = tmp_path / "out"
    code = main(["run", "--task", "denoise", "--image", str(tmp_path / "strip.png"), "--out", str(out)]
                + ["--max-side", "128", "--iters", "1"])  # fmt: skip
    assert code == 2 and capsys.readouterr().err == f"error: {THIN}\n" and not out.exists()
    code = main(
        ["run", "--task", "denoise", "--image", str(tmp_path / "strip.png"), "--out", str(out), "--max-side", "8"]
    )
    assert (
        code == 2 and "the maximum side (8 px) is under the smallest supported side (16 px)" in capsys.readouterr().err
    )


def test_the_low_resolution_minimum_is_the_sr_tasks():
    observed_task("sr", np.full((LOW_RES_MIN_SIDE, LOW_RES_MIN_SIDE, 3), 0.5, np.float32), 4)
    with pytest.raises(InputError, match=f"smallest supported side is {LOW_RES_MIN_SIDE}"):
        observed_task("sr", np.full((LOW_RES_MIN_SIDE - 1, 40, 3), 0.5, np.float32), 4)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_super_resolution_results_fit_max_side(factor, tmp_path):
    path = tmp_path / "a.png"
    photo(300, 200).save(path)
    clean = parse_request(str(path), task="sr", level=factor, max_side=128, **TINY)
    assert max(clean.task.out_size) <= 128 and clean.task.clean is not None
    seen = parse_request(str(path), task="sr", level=factor, observed=True, max_side=128, **TINY)
    assert max(seen.task.out_size) <= 128 and tuple(seen.task.observation.shape[-2:]) == (
        seen.task.out_size[0] // factor,
        seen.task.out_size[1] // factor,
    )
    photo(100, 60).save(tmp_path / "small.png")  # a small observed image: upscaled ×factor, still ≤ 128
    small = parse_request(str(tmp_path / "small.png"), task="sr", level=factor, observed=True, max_side=128, **TINY)
    assert max(small.task.out_size) <= 128


def test_observed_sr_refuses_a_maximum_side_its_result_cannot_fit(tmp_path):
    path = tmp_path / "a.png"
    photo(64, 64).save(path)
    with pytest.raises(InputError) as err:
        parse_request(str(path), task="sr", level=8, observed=True, max_side=32, **TINY)
    assert str(err.value) == (
        "×8 super-resolution of an already-degraded image needs a maximum side of at least 64 px (its result is "
        "8 times the image), got 32"
    )
    req = parse_request(str(path), task="sr", level=8, observed=True, max_side=64, **TINY)
    assert req.task.out_size == (64, 64)
    photo(300, 40).save(tmp_path / "thin.png")  # 32 px long at ×4: its short side would be 4 < 8
    with pytest.raises(InputError, match=r"^image is 300×40 pixels: brought to 32 px .* under 8 px; .* 4:1$"):
        parse_request(str(tmp_path / "thin.png"), task="sr", level=4, observed=True, max_side=128, **TINY)


# ---------------------------------------------------------------- 2. the GIF fits a fixed box


def test_gif_strips_of_a_long_image_fit_the_box():
    long = np.random.default_rng(0).random((16, 1024, 3)).astype(np.float32)
    for images in ([long] * 3, [long, long.transpose(1, 0, 2)], [np.zeros((16, 16, 1))] * 4):
        strip = side_by_side(images, "Vanilla DIP | Controlled · iteration 10")
        assert strip.shape[1] <= GIF_BOX[0] and strip.shape[0] == GIF_BOX[1]
    normal = side_by_side([np.zeros((16, 32, 3)), np.ones((16, 16, 1))])
    assert normal.shape == (GIF_BOX[1], 3 * exports.GIF_SIDE + exports.GIF_GAP, 3)  # small strips as before
    assert exports.fit_box(np.zeros((300, 3000, 3), np.uint8)).shape[1] <= GIF_BOX[0]


def test_the_downloads_gif_of_a_long_image_fits_the_box(tmp_path):
    img = np.random.default_rng(0).random((16, 256, 3)).astype(np.float32)
    req = parse_request(img, max_side=256, **TINY)
    assert req.task.out_size == (16, 256)
    last = list(frames.stream(LabRun(req).stream()))[-1]
    files = write_downloads(last.run, tmp_path, last.animation)
    gif = Image.open(next(f for f in files if f.endswith(".gif")))
    assert gif.width <= GIF_BOX[0] and gif.height <= GIF_BOX[1]
    assert all(f.shape[1] <= GIF_BOX[0] and f.shape[0] <= GIF_BOX[1] for f in last.animation)


# ---------------------------------------------------------------- 3. the decode cache, bounded in bytes


def test_byte_lru_evicts_the_least_recently_used_and_keeps_no_oversized_entry():
    cache = ByteLRU(100)
    assert cache.put("a", 1, 40) and cache.put("b", 2, 40)
    assert cache.get("a") == 1  # a is now the most recent: b goes first
    assert cache.put("c", 3, 40)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and cache.nbytes == 80
    assert not cache.put("huge", 4, 101) and cache.get("huge") is None and cache.nbytes == 80
    assert cache.put("a", 5, 10) and cache.nbytes == 50 and cache.get("a") == 5  # replaced, not counted twice
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_byte_lru_is_thread_safe():
    cache = ByteLRU(1000)

    def work(t: int) -> None:
        for i in range(2000):
            cache.put((t, i % 50), i, 7 + (i % 5))
            cache.get((t, (i * 7) % 50))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == sum(size for _, size in cache._items.values()) <= 1000


def test_read_image_keeps_decoded_uploads_within_the_byte_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "DECODED", ByteLRU(3 * 128 * 128 * 3 * 4))  # three 128 px colour images
    for i in range(6):
        photo(300, 300, seed=i).save(tmp_path / f"{i}.png")
        read_image(str(tmp_path / f"{i}.png"), 128)
    assert len(inputs.DECODED) == 3 and inputs.DECODED.nbytes <= inputs.DECODED.max_bytes
    monkeypatch.setattr(inputs, "DECODED", ByteLRU(1000))  # larger than the bound: read, never kept
    assert read_image(str(tmp_path / "0.png"), 128)[0].shape == (128, 128, 3) and len(inputs.DECODED) == 0
    assert inputs.DECODE_CACHE_BYTES == 64 * 2**20


# ---------------------------------------------------------------- 6. an upload Gradio deleted meanwhile


def test_a_deleted_upload_is_one_line_without_its_path():
    from demo import events

    gone = str(gradio_temp_dir() / "0123456789abcdef" / "photo.png")
    for call in (lambda: read_image(gone, 128), lambda: read_mask(gone, (32, 32))):
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == STALE == str(stale_upload())
    assert events.describe_image(gone, 128)[0] == f"⚠️ {STALE}"


# ---------------------------------------------------------------- 4. URLs and data URLs, as uploads


@pytest.fixture(scope="module")
def image_component():
    from demo.guards import image_input

    return image_input(label="Image")


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def test_a_data_url_becomes_a_file_read_as_an_upload(image_component, tmp_path):
    path = image_component.preprocess(ImageData(url=data_url(png(photo(48, 32)))))
    assert Path(path).is_file() and Path(path).is_relative_to(Path(image_component.GRADIO_CACHE))
    assert read_image(path, 128)[0].shape == (32, 48, 3)
    thin = image_component.preprocess(ImageData(url=data_url(png(Image.new("RGB", (20000, 16))))))
    with pytest.raises(InputError, match="^" + THIN + "$"):  # the both-sides rule, from the header, as uploads
        read_image(thin, 128)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda: "data:image/png;base64," + "A" * (28 * 2**20),
            r"^the image sent as a data URL is 21\.0 MB; the limit is 20 MB, as for uploads$",
        ),
        (lambda: data_url(declared_png(8000, 8000)), r"^image: image is 8000×8000 pixels; the limit is 50 megapixels$"),
        (lambda: data_url(declared_png(60000, 60000)), r"^image: image is too large to open$"),
        (lambda: data_url(b"hello, this is text"), r"^image: not a readable image file$"),
        (lambda: "data:image/png;base64,@@@@", r"^the image sent as a data URL is not valid base64$"),
        (lambda: "data:image/png,rawdata", r"^the image sent as a data URL is not base64 data"),
    ],
)
def test_data_urls_are_bounded_before_decoding(image_component, make, expected, loads):

    with refused(expected):
        image_component.preprocess(ImageData(url=make()))
    assert loads == []


def test_a_url_only_payload_is_refused_without_fetching(image_component):

    with refused(r"^images are not fetched from URLs: upload the image file instead \(got "):
        image_component.preprocess(ImageData(url="https://example.com/cat.png"))


@pytest.fixture(scope="module")
def server():
    from app import make_app
    from demo.ui import launch_options

    demo = make_app()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def loopback_files():
    """A plain HTTP server on 127.0.0.1 that serves a PNG and counts the requests it gets."""
    hits: list[str] = []
    body = png(photo(48, 32))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/cat.png", hits
    httpd.shutdown()


def run_data(image: dict) -> list:
    """/run's positional inputs (demo.form.RunForm's fields) with ``image`` and a tiny run."""
    return [image, "denoise", None, 1.4, "bilinear", 0.5, 10, 0, "off", False, False, None, 32, 8, 0.01]


def raw_run(url: str, data: list) -> str:
    """/run over plain HTTP; its event stream."""
    event = httpx.post(f"{url}gradio_api/call/run", json={"data": data}).json()["event_id"]
    return httpx.get(f"{url}gradio_api/call/run/{event}", timeout=60).text


def error_line(stream: str) -> str:
    assert "event: error" in stream, stream[-400:]
    return json.loads(stream.split("event: error\ndata:", 1)[1].strip().splitlines()[0])["error"]


@pytest.mark.parametrize("field", ["path", "url"])
def test_an_image_url_through_run_is_refused_and_never_fetched(server, loopback_files, field):
    _, url = server
    remote, hits = loopback_files
    image = {"path": remote, "url": remote, "meta": {"_type": "gradio.FileData"}}
    if field == "url":
        image.pop("path")
    message = error_line(raw_run(url, run_data(image)))
    assert message.startswith("images are not fetched from URLs: upload the image file instead (got 'http://127.0.")
    assert hits == []


def test_a_deleted_upload_through_run_is_one_line(server, tmp_path):
    _, url = server
    (tmp_path / "photo.png").write_bytes(png(photo(48, 32)))
    with open(tmp_path / "photo.png", "rb") as fh:
        path = httpx.post(f"{url}gradio_api/upload", files={"files": fh}).json()[0]
    os.remove(path)  # what delete_cache does an hour later
    assert error_line(raw_run(url, run_data({"path": path, "meta": {"_type": "gradio.FileData"}}))) == STALE


# ---------------------------------------------------------------- 5. the mask editor's component server


def editor_of(demo):
    import gradio as gr

    return next(b for b in demo.blocks.values() if isinstance(b, gr.ImageEditor))


def blob_call(fields: dict, blob: bytes | None = b"") -> object:
    from gradio.data_classes import DataWithFiles

    return DataWithFiles(data=fields, files=[] if blob is None else [("layer_0.png", blob)])


@pytest.fixture
def editor(server):
    ed = editor_of(server[0])
    ed.blob_storage.clear()
    yield ed
    ed.blob_storage.clear()


@pytest.mark.parametrize(
    ("fields", "blob", "code", "expected"),
    [
        (
            dict(type="mask", index="0", id="a"),
            None,
            400,
            "editor: type must be one of background, layer, composite, got 'mask'",
        ),
        (
            dict(type="layer", index="20000000", id="a"),
            None,
            400,
            "editor: layer index must be a number between 0 and 0, got '20000000'",
        ),
        (dict(type="layer", index="-1", id="a"), None, 400, "editor: layer index must be a number between 0 and 0"),
        (dict(type="layer", index="0", id="x" * 65), None, 400, "editor: id must be a text of 1 to 64 characters"),
        (dict(type="layer", index="0", id="a"), "none", 400, "editor: no image file was sent"),
        (dict(type="background", index="null", id="a"), b"not an image", 400, "editor: not a readable image file"),
        (
            dict(type="background", index="null", id="a"),
            "big",
            400,
            f"editor: image is 5000×5000 pixels; the editor takes at most {EDITOR_MAX_SIDE} px",
        ),
        (dict(type="composite", index="null", id="a"), "huge", 413, "editor: the image is 21.0 MB; the limit is 20 MB"),
    ],
)
def test_accept_blobs_refuses_what_the_editor_never_sends(editor, fields, blob, code, expected):
    from fastapi import HTTPException

    made = {None: png(Image.new("RGBA", (8, 8))), "none": None, "big": declared_png(5000, 5000)}
    blob = made[blob] if blob in made else b"\0" * (21 * 2**20) if blob == "huge" else blob
    with pytest.raises(HTTPException) as err:
        editor.accept_blobs(blob_call(fields, blob))
    assert err.value.status_code == code and err.value.detail.startswith(expected) and "\n" not in err.value.detail
    assert len(editor.blob_storage) == 0


def test_accept_blobs_keeps_the_editors_edits_and_at_most_n_ids(editor, monkeypatch):
    layer = np.zeros((20, 30, 4), np.uint8)
    layer[5:10, 5:10] = (255, 45, 149, 255)
    blob = png(Image.fromarray(layer))
    editor.accept_blobs(blob_call(dict(type="layer", index="0", id="first"), blob))
    editor.accept_blobs(blob_call(dict(type="background", index="null", id="first"), png(photo(30, 20))))
    out = editor.preprocess(editor.data_model(id="first"))  # what Run sends: the edit's id
    assert out["layers"][0].shape == (20, 30, 4) and out["background"].shape[:2] == (20, 30)
    assert len(editor.blob_storage) == 0  # taken by preprocess
    monkeypatch.setattr(guards, "EDITOR_MAX_IDS", 3)
    for i in range(10):
        editor.accept_blobs(blob_call(dict(type="layer", index="0", id=f"e{i}"), blob))
    assert list(editor.blob_storage) == ["e7", "e8", "e9"]  # the oldest dropped
    monkeypatch.setattr(guards, "EDITOR_STORE_BYTES", 2 * len(blob))
    editor.accept_blobs(blob_call(dict(type="layer", index="0", id="last"), blob))
    assert list(editor.blob_storage) == ["e9", "last"]


def test_the_editor_preprocess_refuses_a_large_image_from_its_header(editor, tmp_path, loads):
    from gradio.components.image_editor import EditorDataBlobs

    editor.blob_storage["big"] = EditorDataBlobs(background=declared_png(5000, 5000), layers=[], composite=None)
    with refused(rf"^editor: image is 5000×5000 pixels; the editor takes at most {EDITOR_MAX_SIDE} px a side$"):
        editor.preprocess(editor.data_model(id="big"))
    path = tmp_path / "bomb.png"
    path.write_bytes(declared_png(60000, 60000))
    with refused(r"^editor: image is too large to open$"):
        editor.preprocess(editor.data_model(layers=[FileData(path=str(path))]))
    (tmp_path / "bad.png").write_bytes(b"hello, this is text")
    with refused(r"^editor: not a readable image file$"):
        editor.preprocess(editor.data_model(layers=[FileData(path=str(tmp_path / "bad.png"))]))
    assert loads == [] or all(max(s) <= 8 for s in loads)  # the large ones never decoded


def test_the_component_server_route_answers_one_line_and_keeps_nothing(server):
    demo, url = server
    ed = editor_of(demo)
    ed.blob_storage.clear()
    fields = dict(session_hash="bounds", component_id=str(ed._id), fn_name="accept_blobs", type="layer", id="a")
    blob = png(Image.new("RGBA", (8, 8)))
    files = {"file": ("layer_0.png", blob, "image/png")}
    bad = httpx.post(f"{url}gradio_api/component_server", data={**fields, "index": "20000000"}, files=files)
    assert bad.status_code == 400, bad.text
    assert bad.json()["detail"] == "editor: layer index must be a number between 0 and 0, got '20000000'"
    assert len(ed.blob_storage) == 0
    good = httpx.post(f"{url}gradio_api/component_server", data={**fields, "index": "0"}, files=files)
    assert good.status_code == 200, good.text
    assert list(ed.blob_storage) == ["a"] and ed.blob_storage["a"].layers == [blob]
    ed.blob_storage.clear()


def test_every_request_body_is_bounded_before_the_app_reads_it(server):
    _, url = server
    limit = guards.MAX_UPLOAD_BYTES + guards.BODY_MARGIN
    line = guards.BODY_TOO_LARGE.format(mb=limit / 2**20)
    big = b"x" * (limit + 1)
    declared = httpx.post(f"{url}gradio_api/queue/join", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json() == {"detail": line}

    def chunks():  # no content-length: the body is counted as it arrives
        for _ in range(limit // 2**20 + 2):
            yield b"x" * 2**20

    streamed = httpx.post(f"{url}gradio_api/component_server", content=chunks())
    assert streamed.status_code == 413 and streamed.json() == {"detail": line}
    assert httpx.get(f"{url}config").status_code == 200  # the server goes on
