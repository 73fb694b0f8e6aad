"""Bounds in front of Gradio for what a visitor sends besides an event's values: request bodies and direct REST calls
(``RequestGuard``), images given as URLs or data URLs, and the mask editor's component server (``bound_component``);
and Gradio's own checks of an event's values, patched (``image_input``, ``guard_inputs``). Each refusal is one line of
ours."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import inspect
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
import orjson
from fastapi import HTTPException
from gradio import utils as gr_utils
from gradio.components.image_editor import EditorDataBlobs
from gradio_client.utils import is_http_url_like

from dip_core import InputError
from dip_core.errors import shown
from dip_core.io import image_size

from .inputs import number, stale_upload, upload_gone
from .settings import LIMITS
from .turns import NEW_SESSION_CHECKED, NEW_SESSION_S, client_address

#: The largest file a visitor may upload (an image or a config JSON): a 24-megapixel photo as PNG is about 20 MB.
MAX_UPLOAD = "20mb"
MAX_UPLOAD_BYTES = gr_utils._parse_file_size(MAX_UPLOAD)
#: Any request body: an upload's bound and room for a form's fields or a JSON event's other values.
BODY_MARGIN = 2**20
BODY_TOO_LARGE = "the request is larger than {mb:.0f} MB, the most this server reads"
#: A direct REST call (``POST /gradio_api/run/NAME``) to an endpoint that answers through the queue.
DIRECT_CALL = (
    "{name} answers through the queue only (its turns are fair): use gradio_client, or POST /gradio_api/call/{name}"
)
DIRECT_ROUTE = re.compile(r"^/gradio_api/(?:run|api)/([^/]+)/?$")
#: Gradio routes this app does not offer: deep links (each call writes a session's state to a new file).
CLOSED_ROUTES = ("/gradio_api/deep_link",)
CLOSED = "this server does not offer {path}"
JOIN_ROUTE = "/gradio_api/queue/join"
#: A join refused for its address's new-session budget (429) is answered after one refill of the budget, holding no
#: thread, with a Retry-After: a script's senders then join at its budget's pace, not as fast as the server can refuse
#: them (2,100 refusals in 4 s, 0.8 ms of the event loop each, held a class's scrubs up to 2.5 s); a new session
#: within the budget waits for its address's pace (turns.NEW_SESSIONS_PER_S). At most REFUSED_HELD joins wait at once;
#: beyond, they are answered (or admitted) at once.
REFUSED_DELAY_S, REFUSED_HELD = NEW_SESSION_S, 256
#: The page and its config: the same bytes for every visitor who reaches the server by the same name (Gradio deep-copies
#: and rewrites a 250 KB config for each, 30-40 ms of the server's interpreter: a class opening the page at once queued
#: everything behind it). Kept PAGE_CACHE_S seconds per (route, query, scheme, host and proxy headers).
PAGE_ROUTES, PAGE_CACHE_S, PAGE_CACHE_ENTRIES = ("/", "/config"), 10.0, 16
PAGE_KEY_HEADERS = (b"host", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-prefix", b"accept-encoding")
#: A visitor's stream of messages: the page's and gradio_client's, and the REST API's per event.
STREAM_ROUTE, CALL_STREAM = "/gradio_api/queue/data", re.compile(r"^/gradio_api/call/[^/]+/([^/]+)/?$")
#: The mask editor (``gr.ImageEditor``, one layer) as its component server and preprocess take it: the layer indices,
#: the edits kept (ids, and bytes in all; oldest dropped first), an id's length and each image's side.
EDITOR_MAX_LAYERS = 1
EDITOR_MAX_IDS = 256
EDITOR_STORE_BYTES = 64 * 2**20
EDITOR_ID_CHARS = 64
#: The editor shows the image read at most ``max_side_cap`` a side; twice that leaves room for a high-DPI canvas.
EDITOR_MAX_SIDE = 2 * LIMITS.max_side_cap
EDITOR_KINDS = ("background", "layer", "composite")


def data_url_file(url: str, folder: str | os.PathLike, max_bytes: int) -> str:
    """An image sent as a data URL (``data:image/png;base64,...``) written unchanged to a file under ``folder``, as an
    upload would be: refused (``InputError``) over ``max_bytes`` before decoding the base64, and when its header is
    not an image's or declares more than MAX_PIXELS; the pixels are read later, as any upload's."""
    head, sep, body = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InputError("the image sent as a data URL is not base64 data (data:image/png;base64,...)")
    size = len(body) * 3 // 4
    if size > max_bytes:
        raise InputError(
            f"the image sent as a data URL is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:g} MB, as for "
            "uploads"
        )
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the image sent as a data URL is not valid base64") from None
    image_size(data)  # not an image, or too many pixels: refused from its header
    digest = hashlib.sha256(data).hexdigest()
    path = Path(folder) / digest / "image"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        part = path.with_name(f".image.{os.getpid()}.{threading.get_ident()}")
        part.write_bytes(data)
        os.replace(part, path)
    return str(path)


def remote_url(value: str) -> InputError:
    """The refusal of an image given by a remote URL (this server fetches nothing for a visitor)."""
    return InputError(f"images are not fetched from URLs: upload the image file instead (got {shown(value)})")


class BlobStore(OrderedDict):
    """The mask editor's ``blob_storage`` (edit id → its images), bounded: at most EDITOR_MAX_IDS ids and
    EDITOR_STORE_BYTES of images, the oldest dropped first (the newest is always kept); thread-safe."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def store(self, key: str, kind: str, index: int | None, blob: bytes, empty: Any) -> None:
        """Put ``blob`` as the edit ``key``'s ``kind`` image (layer ``index``), ``empty()`` making a new edit."""
        with self.lock:
            current = self.pop(key, None) or empty()
            if kind == "layer" and index is not None:
                current.layers.extend([None] * (index + 1 - len(current.layers)))
                current.layers[index] = blob
            elif kind == "background":
                current.background = blob
            elif kind == "composite":
                current.composite = blob
            self[key] = current
            total = sum(_edit_bytes(e) for e in self.values())
            while len(self) > 1 and (len(self) > EDITOR_MAX_IDS or total > EDITOR_STORE_BYTES):
                total -= _edit_bytes(self.popitem(last=False)[1])


def _edit_bytes(edit: Any) -> int:
    """The bytes of one stored edit's images."""
    return sum(len(b) for b in (edit.background, edit.composite, *edit.layers) if b is not None)


def check_blob(fields: Any, files: Any, max_bytes: int) -> tuple[str, int | None, bytes, str]:
    """What the mask editor's ``accept_blobs`` was sent, checked: (kind, layer index, image bytes, edit id);
    ``InputError`` for any other kind, an index past EDITOR_MAX_LAYERS, an image over ``max_bytes`` or not an image
    within EDITOR_MAX_SIDE (read from its header)."""
    fields = fields if isinstance(fields, dict) else {}
    kind, index, key = fields.get("type"), fields.get("index"), fields.get("id")
    if kind not in EDITOR_KINDS:
        raise InputError(f"editor: type must be one of {', '.join(EDITOR_KINDS)}, got {shown(kind)}")
    if index in (None, "", "null"):
        index = None
    else:
        index = number("editor: layer index", index, 0, EDITOR_MAX_LAYERS - 1, True)
    if not isinstance(key, str) or not 0 < len(key) <= EDITOR_ID_CHARS:
        raise InputError(f"editor: id must be a text of 1 to {EDITOR_ID_CHARS} characters, got {shown(key)}")
    first = files[0] if isinstance(files, (list, tuple)) and files else None
    blob = first[1] if isinstance(first, (list, tuple)) and len(first) == 2 else None
    if not isinstance(blob, bytes):
        raise InputError("editor: no image file was sent")
    if len(blob) > max_bytes:
        raise InputError(f"editor: the image is {len(blob) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:g} MB")
    editor_image(blob)
    return kind, int(index) if index is not None else None, blob, key


def editor_image(source: str | os.PathLike | bytes) -> tuple[int, int]:
    """The (width, height) of one of the editor's images from its header, nothing decoded; ``InputError`` if it is
    not an image, is gone, or is over EDITOR_MAX_SIDE a side (or MAX_PIXELS)."""
    if isinstance(source, (str, os.PathLike)) and upload_gone(source):
        raise stale_upload()
    try:
        w, h = image_size(source)
    except InputError as err:
        raise InputError(f"editor: {str(err).split(': ', 1)[-1]}") from None
    if max(w, h) > EDITOR_MAX_SIDE:
        raise InputError(f"editor: image is {w}×{h} pixels; the editor takes at most {EDITOR_MAX_SIDE} px a side")
    return w, h


def editor_sources(payload: Any, store: BlobStore) -> Iterator[str | bytes]:
    """Every image an editor payload (``EditorData``) names: its stored blobs (by ``id``) or its files' paths."""
    if payload is None:
        return
    edit = store.get(payload.id) if payload.id is not None else payload
    if edit is None:
        return
    for item in (edit.background, edit.composite, *(edit.layers or [])):
        if item is None:
            continue
        yield item if isinstance(item, bytes) else item.path


def bound_component(component: gr.components.Component) -> None:
    """Refuse, with one line of ours, a file this component is sent as a remote URL: Gradio would download it (any
    size, from any public host) before any preprocess; for the mask editor (``gr.ImageEditor``) also bound its
    component server's ``accept_blobs`` (kinds, layer index, blob size, edits kept: ``demo.inputs.check_blob``,
    ``BlobStore``) and refuse in its preprocess an image over the editor's bounds before it is decoded. Instance
    attributes, as ``image_input``'s."""
    move = component.async_move_resource_to_block_cache

    async def local_only(url_or_file_path):  # noqa: ANN001, ANN202 - Gradio's own signature
        if isinstance(url_or_file_path, str) and is_http_url_like(url_or_file_path):
            raise gr.Error(str(remote_url(url_or_file_path)), print_exception=False)
        return await move(url_or_file_path)

    component.async_move_resource_to_block_cache = local_only
    if not isinstance(component, gr.ImageEditor):
        return
    store, default = BlobStore(), component.preprocess
    component.blob_storage = store
    limit = MAX_UPLOAD_BYTES

    def accept_blobs(data):  # noqa: ANN001, ANN202 - what the component_server route passes
        try:
            kind, index, blob, key = check_blob(getattr(data, "data", None), getattr(data, "files", None), limit)
        except InputError as err:
            code = 413 if " MB; the limit is " in str(err) else 400
            raise HTTPException(status_code=code, detail=str(err)) from None
        store.store(key, kind, index, blob, lambda: EditorDataBlobs(background=None, layers=[], composite=None))

    def preprocess(payload):  # noqa: ANN001, ANN202 - Gradio's own signature
        try:
            for source in editor_sources(payload, store):
                editor_image(source)
            return default(payload)
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - an image the editor cannot read: one line of ours
            raise gr.Error("editor: its image cannot be read: draw the mask again", print_exception=False) from None

    accept_blobs._is_server_fn = True  # what the component_server route looks for
    component.accept_blobs = accept_blobs
    component.preprocess = preprocess


class RequestGuard:
    """ASGI middleware in front of the app: a direct REST call to a queued endpoint (``queued_only``) and a route this
    app does not offer (CLOSED_ROUTES) are answered 404, a request body over ``max_bytes`` 413, each with one line of
    ours. A body is refused from its declared length before the app reads anything, or cut where a streamed one passes
    the bound (Gradio bounds uploads, not the JSON of a queue join or the files of a component-server call)."""

    def __init__(self, app: Any, max_bytes: int = MAX_UPLOAD_BYTES + BODY_MARGIN) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.pages: OrderedDict[tuple, tuple[float, dict, bytes]] = OrderedDict()  # key → (when, start, body)
        self.held = 0  # joins waiting here: refused ones for their answer, new sessions for their pace (REFUSED_HELD)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope.get("method") == "GET" and scope.get("path") in PAGE_ROUTES:
            return await self.page(scope, receive, send)
        if (name := queued_only(scope)) is not None:
            return await answer(send, 404, DIRECT_CALL.format(name=name))
        if scope.get("path", "").rstrip("/") in CLOSED_ROUTES:
            return await answer(send, 404, CLOSED.format(path=scope["path"].rstrip("/")))
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self.refuse(send)
        if scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == JOIN_ROUTE:
            receive = await self.admit(scope, receive, send)
            if receive is None:
                return None
        seen, over, answered = 0, False, False

        async def bounded() -> dict:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # the app sees a client that left; the answer is ours
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: dict) -> None:
            nonlocal answered
            if not over:
                await send(message)
            elif not answered:
                answered = True
                await self.refuse(send)

        turns, session = turns_in(scope), stream_session(scope)
        try:
            with turns.reading(session) if turns is not None else contextlib.nullcontext():
                await self.app(scope, bounded, sending)
        except Exception:
            if not over:
                raise
        if over and not answered:
            await self.refuse(send)

    async def refuse(self, send: Any) -> None:
        await answer(send, 413, BODY_TOO_LARGE.format(mb=self.max_bytes / 2**20))

    async def page(self, scope: dict, receive: Any, send: Any) -> None:
        """The page or its config: a kept copy (``PAGE_CACHE_S``) of Gradio's answer to the same name, else Gradio's
        answer (kept when it is a whole 200 answer)."""
        headers = dict(scope.get("headers") or ())
        key = (scope["path"], scope.get("query_string", b""), scope.get("scheme"), scope.get("root_path", ""))
        key += tuple(headers.get(h, b"")[:256] for h in PAGE_KEY_HEADERS)
        now = time.monotonic()
        if (kept := self.pages.get(key)) is not None and now - kept[0] < PAGE_CACHE_S:
            await send(dict(kept[1]))
            await send({"type": "http.response.body", "body": kept[2]})
            return
        start, chunks = {}, []

        async def keeping(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b"") if not message.get("more_body") else None)
            await send(message)

        await self.app(scope, receive, keeping)
        if start.get("status") == 200 and len(chunks) == 1 and chunks[0] is not None:
            self.pages[key] = (now, start, chunks[0])
            self.pages.move_to_end(key)
            while len(self.pages) > PAGE_CACHE_ENTRIES:
                self.pages.popitem(last=False)

    async def admit(self, scope: dict, receive: Any, send: Any) -> Any:
        """A queue join's new session charged to its address (``turns.Turns.new_session``) before Gradio reads it:
        refused at once (None), or the join's ``receive`` with its body read here."""
        turns = turns_in(scope)
        if turns is None:
            return receive
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, chunks)) > self.max_bytes:
                await self.refuse(send)
                return None
        body = b"".join(chunks)
        try:
            session = orjson.loads(body).get("session_hash")
        except (orjson.JSONDecodeError, AttributeError):
            session = None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        address = client_address(headers, (scope.get("client") or ("unknown",))[0], turns.hops)
        session = session if isinstance(session, str) else None
        new = session is None or session not in turns.queue.pending_messages_per_session
        if (why := turns.new_session(session, address)) is None and new and self.held < REFUSED_HELD:
            if (wait := turns.new_sessions.pace(address)) > 0:  # a new session: at the address's pace
                self.held += 1
                try:
                    await asyncio.sleep(wait)
                finally:
                    self.held -= 1
        if why is not None:
            status, line = why
            if status == 429 and self.held < REFUSED_HELD:  # the address's budget: answered at the budget's pace
                self.held += 1
                try:
                    await asyncio.sleep(REFUSED_DELAY_S)
                finally:
                    self.held -= 1
            await answer(send, status, line, retry_after=REFUSED_DELAY_S if status == 429 else None)
            return None
        scope.setdefault("state", {})[NEW_SESSION_CHECKED] = True
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


def turns_in(scope: dict) -> Any:
    """The ``turns.Turns`` installed on the app a request reached (None: not a served app of ours)."""
    return getattr(getattr(scope.get("app"), "get_blocks", lambda: None)(), "_spectral_turns", None)


def stream_session(scope: dict) -> str | None:
    """The session whose messages a GET request streams (the queue's stream, or the REST API's stream of one event);
    None for any other request."""
    if scope.get("method") != "GET":
        return None
    path = scope.get("path", "").rstrip("/")
    if path == STREAM_ROUTE:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash") or [None]
        return values[0][:256] if values[0] else None
    if (match := CALL_STREAM.match(path)) is not None and (turns := turns_in(scope)) is not None:
        event = turns.queue.event_ids_to_events.get(match.group(1))
        return getattr(event, "session_hash", None)
    return None


def queued_only(scope: dict) -> str | None:
    """The endpoint a direct REST call (``POST /gradio_api/run/NAME``) names, when that endpoint answers through the
    queue (Gradio refuses those with ``api_open`` off, in words of its own); None for any other request."""
    match = DIRECT_ROUTE.match(scope.get("path", "")) if scope.get("method") == "POST" else None
    app = scope.get("app")
    if match is None or not hasattr(app, "get_blocks"):
        return None
    name = match.group(1)[:64]
    fns = [fn for fn in app.get_blocks().fns.values() if fn.api_name == name]
    return name if fns and all(fn.queue for fn in fns) else None


async def answer(send: Any, status: int, line: str, retry_after: float | None = None) -> None:
    """An HTTP answer of ours: ``{"detail": line}`` with ``status`` (and a Retry-After of ``retry_after`` seconds)."""
    body = json.dumps({"detail": line}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def image_input(**kwargs) -> gr.Image:
    """A gr.Image (type filepath) that hands uploads to dip_core untouched, so bad files get one-line errors.

    gr.Image would open the file with PIL first and fail with a traceback; an instance attribute replaces its
    ``preprocess`` (subclassing a gradio component would write a .pyi stub next to this file). An image sent as a
    data URL is bounded as an upload is (MAX_UPLOAD, then dip_core's pixel bounds from its header); one given by a
    remote URL is refused, never fetched (``bound_component``).
    """
    # image_mode=None: with Gradio's default ("RGB"), once an example had been clicked every later upload reached
    # the app re-encoded as RGB (a grey photo ran as colour); files must arrive as the user made them
    image = gr.Image(type="filepath", image_mode=None, **kwargs)

    def preprocess(payload):  # noqa: ANN001, ANN202 - Gradio's own signature
        if payload is None or payload.path:
            return None if payload is None else str(payload.path)
        url = payload.url or ""
        try:
            if not url.startswith("data:"):
                raise remote_url(url)
            return data_url_file(url, image.GRADIO_CACHE, MAX_UPLOAD_BYTES)
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None

    image.preprocess = preprocess
    bound_component(image)
    return image


def guard_input(component: gr.components.Component, name: str) -> None:
    """Check what an API client sends to ``component`` with our one-line messages, before Gradio's own checks
    (which print library text, or fail with a traceback on values such as 10^400): a number must lie in the
    widget's range ("seed must be a number between 0 and 2.14748e+09, got 1e+400"), a choice be one of the
    widget's; any other error of its preprocessing becomes "NAME: this value cannot be used (VALUE)"."""
    default = component.preprocess
    numeric = isinstance(component, (gr.Slider, gr.Number))
    lo = -math.inf if getattr(component, "minimum", None) is None else component.minimum
    hi = math.inf if getattr(component, "maximum", None) is None else component.maximum
    options = None
    if isinstance(component, (gr.Dropdown, gr.Radio)) and not getattr(component, "multiselect", False):
        options = [c[1] if isinstance(c, tuple) else c for c in component.choices]

    def preprocess(payload):  # noqa: ANN001, ANN202 - Gradio's own signature
        if payload is not None:
            try:
                if numeric and (math.isfinite(lo) or math.isfinite(hi)):
                    number(name, payload, lo, hi)
                if options is not None and payload not in options:
                    listed = ", ".join(str(o) for o in options)
                    raise InputError(f"{name} must be one of {listed}, got {shown(payload)}")
            except InputError as err:
                raise gr.Error(str(err), print_exception=False) from None
        try:
            return default(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - a value Gradio cannot take: one line of ours
            raise gr.Error(f"{name}: this value cannot be used ({shown(payload)})", print_exception=False) from None

    component.preprocess = preprocess


def guard_inputs(demo: gr.Blocks) -> None:
    """``guard_input`` on every component any event reads (once each), named as the API names it: by the parameter
    of the public endpoints (``run``, ``replay``), else by its elem_id or label."""
    names: dict[int, str] = {}
    for fn in sorted(demo.fns.values(), key=lambda f: f.api_name not in ("run", "replay")):
        params = [p for p in inspect.signature(fn.fn).parameters if p != "request"] if fn.fn else []
        public = fn.api_name in ("run", "replay") and len(params) == len(fn.inputs)
        for i, component in enumerate(fn.inputs):
            if component._id not in names and hasattr(component, "preprocess"):
                names[component._id] = (
                    params[i]
                    if public
                    else (component.elem_id or str(component.label or type(component).__name__).lower())
                )
    for fn in demo.fns.values():
        for component in fn.inputs:
            name = names.pop(component._id, None)
            if name is not None:
                guard_input(component, name)
