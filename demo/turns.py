"""Fair turns on a public Space: which events may join the queue, whose address a request comes from, and whether
anyone still reads a live run.

Gradio's own ``max_size`` counts every waiting event of every kind, so one script that fills it with live runs also
refuses replays and uploads. Instead the app's queue has no global size, and ``Turns`` (installed on the Blocks'
queue by ``demo.app.make_app``) admits each event as it joins:

- a live run (the ``run`` endpoint): at most PER_SESSION per visitor (browser tab or API client) waiting or running,
  at most ADDRESS_SHARE per client address, and at most LIVE_WAITING waiting in all;
- any other event: at most OTHER_PER_SESSION waiting per visitor and OTHER_WAITING in all (replays never wait: they
  run as soon as they join, in their own group without a limit).

A refused event is answered at once as a finished event with one line of ours (the browser shows it as an error,
``gradio_client`` raises ``AppError``), so it never takes a place in the queue.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

#: Live runs that may wait behind the running one. A CPU run is bounded by its time limit (settings.Limits), so the
#: last in line waits at most LIVE_WAITING × that limit; 8 × 5 min is already a long wait on a 2-core Space.
LIVE_WAITING = 8
#: Live runs (waiting or running) one client address may hold: half the queue. A script that opens a new session per
#: request is held to it, while a class behind one school address still gets 4 runs in line at once, and the other
#: half of the queue stays open to everybody else.
ADDRESS_SHARE = LIVE_WAITING // 2
#: Live runs (waiting or running) one visitor (a browser tab, a ``gradio_client.Client``) may hold.
PER_SESSION = 1
#: Other events (uploads described, task changes, configs loaded, replays) waiting per visitor and in all.
OTHER_PER_SESSION = 8
OTHER_WAITING = 256
#: How many proxies in front of the app append to X-Forwarded-For. On a Hugging Face Space (SPACE_ID is set) it is 1:
#: the right-most entry is the one Hugging Face's proxy added, the address that reached it, which a visitor cannot
#: forge (entries to its left come from the visitor's own request). Elsewhere 0: the socket's peer address.
PROXY_HOPS_ENV = "SPECTRAL_BIAS_LAB_PROXY_HOPS"
#: A live run whose visitor has left this many messages unread gets no new frame until it reads them (frames are
#: dropped, never queued without end) ...
MAX_BACKLOG = 3
#: ... and is stopped when none of them has been read for this many seconds (tab closed, stream never opened).
ABANDON_S = 6.0

BUSY = "a run of yours is already {what}: press Stop to end it (or wait for it) before starting another"
ADDRESS_FULL = (
    "your network address already has {runs} waiting or running, its share of the queue: wait for one of them to end"
)
LIVE_FULL = (
    "the live queue is full ({n} runs waiting): try again in a few minutes; the Paper experiments tab "
    "replays the paper's runs meanwhile"
)
OTHER_FULL = "too many requests from you are waiting: wait for them to finish"
SERVER_BUSY = "the server is busy: try again in a minute"


def proxy_hops() -> int:
    """Proxies trusted to append to X-Forwarded-For: ``SPECTRAL_BIAS_LAB_PROXY_HOPS``, else 1 on a Space, else 0."""
    value = os.environ.get(PROXY_HOPS_ENV, "").strip()
    if value.isdigit():
        return min(int(value), 8)
    return 1 if os.environ.get("SPACE_ID") else 0


def client_address(headers: Mapping[str, str] | None, peer: str | None, hops: int) -> str:
    """The visitor's address: the ``hops``-th X-Forwarded-For entry from the right (the one the nearest trusted
    proxy saw), else the socket's peer. A visitor can prepend entries but not change those a proxy appended."""
    if hops > 0 and headers is not None:
        forwarded = [a.strip() for a in (headers.get("x-forwarded-for") or "").split(",") if a.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops][:64]
    return (peer or "unknown")[:64]


def request_address(request: Any, hops: int | None = None) -> str:
    """``client_address`` of a fastapi or gradio request."""
    hops = proxy_hops() if hops is None else hops
    headers = getattr(request, "headers", None)
    client = getattr(request, "client", None)
    return client_address(headers, getattr(client, "host", None), hops)


class Turns:
    """The admission rules of one app's queue (see the module's docstring); ``install`` puts them in front of it."""

    def __init__(
        self,
        blocks: gr.Blocks,
        live: tuple[str, ...] = ("run",),
        waiting: int = LIVE_WAITING,
        share: int = ADDRESS_SHARE,
        per_session: int = PER_SESSION,
        hops: int | None = None,
    ) -> None:
        self.blocks, self.live_names = blocks, live
        self.waiting, self.share, self.per_session = waiting, share, per_session
        self.hops = proxy_hops() if hops is None else hops
        self.joining: list[tuple[bool, str, str]] = []  # (live, session, address) of events being pushed right now
        self.refused = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, seen at the first push

    @property
    def queue(self) -> Any:
        return self.blocks._queue

    def install(self) -> Turns:
        """Replace the queue's ``push`` with ours (Gradio's own size limit is turned off: ours are per kind)."""
        queue = self.queue
        queue.max_size = None
        original = queue.push

        async def push(body, request, username):  # noqa: ANN001, ANN202 - Gradio's signature
            return await self.push(original, body, request, username)

        queue.push = push
        self.blocks._spectral_turns = self
        return self

    # ------------------------------------------------------------------ what the queue holds

    def is_live(self, fn: Any) -> bool:
        return getattr(fn, "api_name", None) in self.live_names

    def events(self) -> list[tuple[bool, bool, Any]]:
        """(live, running, event) of every event waiting in the queue or running, alive or not yet cleaned."""
        out = []
        for event_queue in self.queue.event_queue_per_concurrency_id.values():
            out += [(self.is_live(e.fn), False, e) for e in event_queue.queue if e.alive]
        for job in self.queue.active_jobs:
            out += [(self.is_live(e.fn), True, e) for e in job or () if e.alive]
        return out

    def refusal(self, live: bool, session: str, address: str) -> str | None:
        """Why an event of this kind, session and address may not join now (None: it may)."""
        held = [
            (lv, running, e.session_hash, request_address(e.request, self.hops)) for lv, running, e in self.events()
        ]
        held += [(lv, False, s, a) for lv, s, a in self.joining]
        if live:
            mine = [running for lv, running, s, _ in held if lv and s == session]
            if len(mine) >= self.per_session:
                return BUSY.format(what="running" if any(mine) else "waiting in the queue")
            n_address = sum(1 for lv, _, _, a in held if lv and a == address)
            if n_address >= self.share:
                return ADDRESS_FULL.format(runs=f"{n_address} live run" + "s" * (n_address != 1))
            n_waiting = sum(1 for lv, running, _, _ in held if lv and not running)
            if n_waiting >= self.waiting:
                return LIVE_FULL.format(n=n_waiting)
            return None
        others = [(running, s) for lv, running, s, _ in held if not lv and not running]
        if sum(1 for _, s in others if s == session) >= OTHER_PER_SESSION:
            return OTHER_FULL
        if len(others) >= OTHER_WAITING:
            return SERVER_BUSY
        return None

    def holds(self, session: str, running: bool | None = None) -> bool:
        """Whether ``session`` has a live run in the queue (``running`` False: waiting; True: running; None: either)."""
        return any(lv and e.session_hash == session and (running is None or r == running) for lv, r, e in self.events())

    async def push(self, original: Any, body: Any, request: Any, username: str | None) -> tuple:
        """Admit the event (Gradio's push) or answer it at once with our refusal."""
        from gradio import route_utils

        self.loop = asyncio.get_running_loop()
        try:
            fn = route_utils.get_fn(self.blocks, None, body)
        except Exception:  # noqa: BLE001 - an unknown function: Gradio's own push answers it
            return await original(body, request, username)
        live, address = self.is_live(fn), request_address(request, self.hops)
        # no session hash (the /call/ API): a fresh one per request, so the address share still holds it
        session = body.session_hash or f"no-session-{id(body)}"
        why = self.refusal(live, session, address)
        if why is not None:
            self.refused += 1
            return self.refuse(fn, body, request, username, why)
        entry = (live, session, address)
        self.joining.append(entry)  # counted until the queue holds it: two joins at once cannot both pass
        try:
            return await original(body, request, username)
        finally:
            self.joining.remove(entry)

    def refuse(self, fn: Any, body: Any, request: Any, username: str | None, why: str) -> tuple:
        """A refused event as Gradio answers a failed one: registered, then finished at once with ``why``."""
        from gradio.exceptions import Error
        from gradio.queueing import Event
        from gradio.server_messages import ProcessCompletedMessage
        from gradio.utils import error_payload

        queue = self.queue
        event = Event(body.session_hash, fn, request, username)
        event.data = body
        session = body.session_hash = body.session_hash or event.session_hash
        if session not in queue.pending_messages_per_session:
            queue.pending_messages_per_session[session] = asyncio.Queue()
        queue.pending_event_ids_session.setdefault(session, set()).add(event._id)
        body.event_id = event._id
        payload = error_payload(Error(why, print_exception=False), True)
        queue.send_message(event, ProcessCompletedMessage(output=payload, success=False))
        return True, event._id, "success"

    # ------------------------------------------------------------------ reading

    def drop(self, session: str | None) -> None:
        """Forget the live run of a visitor who reads nothing: its event sends no more messages, and those it left
        unread are dropped (on the server's event loop: the queue of messages is not thread-safe)."""
        if not session:
            return
        for live, running, event in self.events():
            if live and running and event.session_hash == session:
                event.alive = False
        messages = self.queue.pending_messages_per_session.get(session)

        def drain() -> None:
            while messages is not None and not messages.empty():
                messages.get_nowait()

        if self.loop is not None and messages is not None:
            self.loop.call_soon_threadsafe(drain)

    def backlog(self, session: str | None) -> int:
        """Messages of ``session`` the visitor has not read yet (frames, heartbeats)."""
        if not session:
            return 0
        messages = self.queue.pending_messages_per_session.get(session)
        return 0 if messages is None else messages.qsize()


def turns_of(request: gr.Request | None) -> Turns | None:
    """The Turns installed on the app that ``request`` reached (None outside a served app)."""
    app = getattr(getattr(request, "request", None), "app", None)
    try:
        blocks = app.get_blocks() if app is not None else None
    except Exception:  # noqa: BLE001 - not a Gradio app
        return None
    return getattr(blocks, "_spectral_turns", None)


class Reader:
    """Whether the visitor of a live run still reads it: frames wait while MAX_BACKLOG messages are unread, and
    the run is abandoned when none was read for ABANDON_S seconds."""

    def __init__(self, turns: Turns | None, session: str | None, clock: Any = time.monotonic) -> None:
        self.turns, self.session, self.clock = turns, session, clock
        self.last_backlog, self.last_read = 0, clock()
        self.dropped = 0

    def ready(self) -> bool:
        """True when a new frame may be sent now."""
        if self.turns is None:
            return True
        backlog, now = self.turns.backlog(self.session), self.clock()
        if backlog < self.last_backlog or backlog == 0:
            self.last_read = now
        self.last_backlog = backlog
        if backlog >= MAX_BACKLOG:
            self.dropped += 1
            return False
        return True

    def gone(self) -> bool:
        """True when nothing has been read for ABANDON_S seconds while messages wait."""
        return self.turns is not None and self.last_backlog > 0 and self.clock() - self.last_read > ABANDON_S
