"""Fair turns on a public Space: which events may join the queue, whose address a request comes from, and whether
anyone still reads a live run.

Gradio's own ``max_size`` counts every waiting event of every kind, so one script that fills it with live runs also
refuses replays and uploads. Instead the app's queue has no global size, and ``Turns`` (installed on the Blocks'
queue by ``demo.app.make_app``) admits each event as it joins:

- a live run (the ``run`` endpoint): at most PER_SESSION per visitor (browser tab or API client) waiting or running,
  at most ADDRESS_SHARE per client address, and at most LIVE_WAITING waiting in all;
- any other event: at most OTHER_PER_SESSION waiting per visitor, OTHER_PER_ADDRESS per address and OTHER_WAITING in
  all (replays hold no thread while they wait: demo/experiments.py).

Addresses are normalised (an IPv4-mapped IPv6 address is its IPv4 address, an IPv6 address is its /64 network), so
one visitor cannot pose as many. A refused event is answered at once as a finished event with one line of ours (the
browser shows it as an error, ``gradio_client`` raises ``AppError``), so it never takes a place in the queue.

Gradio keeps the message queues of MAX_SESSIONS visitors and evicted the oldest, waiting or not, so a script joining
with fresh session hashes could silence every waiting visitor. Here a visitor with an event waiting or running is never
evicted, the others in the order of their last use (``Sessions``); a new session hash is admitted only within its
address's NEW_SESSIONS budget (beyond it the join is answered HTTP 429 and registers nothing); and a message for a
session that is gone is dropped.

A free place in a group goes first to a visitor who reads: an event whose visitor has a stream open, then the one whose
address has the fewest events running in the group. Events nobody reads (a script that joins and never opens its
stream) run UNREAD_RUNNING at a time per group, only while no reader's event waits there or runs anywhere (live runs
aside): a quiet server's moments.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import ipaddress
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
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
#: ... and per client address: half of them, so one address (a script, or a whole school behind one) leaves the
#: other half to everybody else.
OTHER_PER_ADDRESS = OTHER_WAITING // 2
#: Visitors whose message queues the server keeps (Gradio's own number); only idle ones are ever evicted.
MAX_SESSIONS = 2000
#: New session hashes one address may open: a burst of NEW_SESSIONS (a class of 40 behind one school address, each
#: reloading twice), then one per NEW_SESSION_S seconds. Beyond it a join is refused before anything is built for it.
NEW_SESSIONS = 120
NEW_SESSION_S = 1.0
#: ... admitted at most this many a second (a class behind one address opens about 8): a script's burst of 120 new
#: sessions spreads over 6 s instead of landing on the server at once (0.4 s of its event loop in a third of a second).
NEW_SESSIONS_PER_S = 20.0
#: Events of visitors with no stream open that run at once in a group, and only while no reader's event waits there or
#: runs anywhere but in a live run: a script's hundred unread replays (25 ms of the server each) wait for quiet.
UNREAD_RUNNING = 1
#: Set on a request whose new session ``guards.RequestGuard`` already charged (it refuses the others before any of
#: Gradio's request handling: a script's flood costs the server a fraction of a millisecond a join)
NEW_SESSION_CHECKED = "turns_new_session_checked"
#: How many proxies in front of the app append to X-Forwarded-For. On a Hugging Face Space (SPACE_ID is set) it is 1:
#: the right-most entry is the one Hugging Face's proxy added, the address that reached it, which a visitor cannot
#: forge (entries to its left come from the visitor's own request). Elsewhere 0: the socket's peer address.
PROXY_HOPS_ENV = "SPECTRAL_BIAS_LAB_PROXY_HOPS"
#: A live run whose visitor has left this many messages unread gets no new frame until it reads them (frames are
#: dropped, never queued without end) ...
MAX_BACKLOG = 3
#: ... and is stopped when its stream was closed (tab closed), when none of them was read this many seconds after
#: the first one (the stream was never opened) ...
ABANDON_S = 6.0
#: ... or when a stream that did read has read nothing for this long (a slow reader loses frames, not its run).
STALLED_S = 60.0

BUSY = "a run of yours is already {what}: press Stop to end it (or wait for it) before starting another"
ADDRESS_FULL = (
    "your network address already has {runs} waiting or running, its share of the queue: wait for one of them to end"
)
LIVE_FULL = (
    "the live queue is full ({n} runs waiting): try again in a few minutes; the Paper experiments tab "
    "replays the paper's runs meanwhile"
)
OTHER_FULL = "too many requests from you are waiting: wait for them to finish"
ADDRESS_BUSY = "too many requests from your network address are waiting: try again in a minute"
SERVER_BUSY = "the server is busy: try again in a minute"
NEW_SESSIONS_FULL = "too many new sessions from your network address: wait a minute, or reuse the page you have open"


def proxy_hops() -> int:
    """Proxies trusted to append to X-Forwarded-For: ``SPECTRAL_BIAS_LAB_PROXY_HOPS``, else 1 on a Space, else 0."""
    value = os.environ.get(PROXY_HOPS_ENV, "").strip()
    if value.isdigit():
        return min(int(value), 8)
    return 1 if os.environ.get("SPACE_ID") else 0


def normal_address(text: str) -> str:
    """One name per visitor: an IPv4 address as it is, an IPv4-mapped IPv6 address as its IPv4 address, an IPv6
    address as its /64 network (one visitor's line holds all of them), anything else lower-cased, 64 characters."""
    return _normal_address(text[:128])  # no address is longer: the cache below holds at most 4096 × 128 characters


@functools.lru_cache(maxsize=4096)  # every join reads every waiting event's address: each text is parsed once
def _normal_address(text: str) -> str:
    text = text.strip().lower()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return text[:64] or "unknown"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(headers: Mapping[str, str] | None, peer: str | None, hops: int) -> str:
    """The visitor's address (``normal_address``): the ``hops``-th X-Forwarded-For entry from the right (the one the
    nearest trusted proxy saw), else the socket's peer. A visitor can prepend entries but not change those a proxy
    appended."""
    if hops > 0 and headers is not None:
        forwarded = [a.strip() for a in (headers.get("x-forwarded-for") or "")[:4096].split(",") if a.strip()]
        if len(forwarded) >= hops:
            return normal_address(forwarded[-hops])
    return normal_address(peer or "unknown")


def request_address(request: Any, hops: int | None = None) -> str:
    """``client_address`` of a fastapi or gradio request."""
    hops = proxy_hops() if hops is None else hops
    headers = getattr(request, "headers", None)
    client = getattr(request, "client", None)
    return client_address(headers, getattr(client, "host", None), hops)


def light_session_state() -> None:
    """Gradio's ``SessionState`` keeps every component's config (JSON schemas included), built when a session is made
    and again at each of its answers, only for deep links, which this app does not offer (``guards.RequestGuard``
    refuses them): 16 ms of the event loop per new visitor (2 s for a script's burst of new sessions), several per
    answer. Here a session's configs are empty and never built. Once per process."""
    from gradio import state_holder

    state = state_holder.SessionState
    if getattr(state, "light", False):
        return
    build = state.__init__

    class Unbuilt:  # what SessionState.__init__ reads of its Blocks, with no blocks to build configs for
        def __init__(self, blocks: Any) -> None:
            self.default_config, self.blocks = blocks.default_config, {}

    def __init__(self: Any, blocks: Any) -> None:
        build(self, Unbuilt(blocks))
        self.blocks_config.config_for_block = unconfigured  # this session's copy only (no gr.render here)

    def unconfigured(*args: Any, **kwargs: Any) -> dict:
        return {}

    state.__init__, state.light = __init__, True


SKIP = {"__type__": "update"}  # gr.skip(): an output left as it is


def cheap_skips(blocks: Any) -> None:
    """Gradio builds a new component for every update it sends, for a ``gr.skip()`` too, and sends an empty update
    (0.4 ms each: a plain visit's page load, 33 outputs mostly skipped, took 13 ms). Here a skip of a component that
    is not a State is sent as that same empty update, unbuilt. Once per app."""
    original = blocks.postprocess_data
    if getattr(original, "cheap_skips", False):
        return

    async def postprocess_data(block_fn: Any, predictions: Any, state: Any) -> list:
        outputs = block_fn.outputs
        if (
            not isinstance(predictions, (list, tuple))
            or len(predictions) != len(outputs)
            or len(outputs) < 2
            or block_fn.batch
            or block_fn.is_validator_function
        ):
            return await original(block_fn, predictions, state)
        skip = [isinstance(p, dict) and p == SKIP and not b.stateful for p, b in zip(predictions, outputs)]
        kept = [i for i, skipped in enumerate(skip) if not skipped]
        if len(kept) == len(outputs):
            return await original(block_fn, predictions, state)
        out = [dict(SKIP) for _ in outputs]
        if kept:
            fewer = copy.copy(block_fn)
            fewer.outputs = [outputs[i] for i in kept]
            rest = [predictions[i] for i in kept]  # a single output's prediction goes alone, as Gradio expects it
            for i, value in zip(kept, await original(fewer, rest if len(kept) > 1 else rest[0], state)):
                out[i] = value
        return out

    postprocess_data.cheap_skips = True  # type: ignore[attr-defined]
    blocks.postprocess_data = postprocess_data


class Sessions(OrderedDict):
    """Gradio's table of message queues per session, bounded at ``max_size`` like Gradio's own and kept in the order of
    last use (a join, a message sent), but evicting the least recently used session with no event waiting or running
    (``active()`` names those), never one a visitor waits on."""

    def __init__(self, active: Callable[[], set[str]], max_size: int = MAX_SESSIONS) -> None:
        super().__init__()
        self.active, self.max_size = active, max_size

    def idle(self) -> str | None:
        """The least recently used session with nothing waiting or running (None: every kept session is busy)."""
        busy = self.active()
        return next((key for key in self if key not in busy), None)

    def full(self) -> bool:
        """True when a new session could only be kept by evicting a busy one."""
        return len(self) >= self.max_size and self.idle() is None

    def touch(self, key: str | None) -> None:
        """``key`` was just used: the last to be evicted."""
        if key in self:
            self.move_to_end(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self:
            self.move_to_end(key)
        elif len(self) >= self.max_size and (oldest := self.idle()) is not None:
            del self[oldest]
        super().__setitem__(key, value)


class NewSessions:
    """Per address, a budget of new session hashes: ``burst`` at once, then one every ``period`` seconds (a token
    bucket; idle addresses are forgotten beyond ``remembered`` of them), admitted at most ``per_second`` a second."""

    def __init__(
        self,
        burst: int = NEW_SESSIONS,
        period: float = NEW_SESSION_S,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = 10_000,
        per_second: float = NEW_SESSIONS_PER_S,
    ) -> None:
        self.burst, self.period, self.clock, self.remembered = burst, period, clock, remembered
        self.per_second = per_second
        self.tokens: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address → (tokens, when)
        self.slots: OrderedDict[str, float] = OrderedDict()  # address → when its next new session may be admitted

    def take(self, address: str) -> bool:
        """Spend one of ``address``'s new sessions; False when it has none left (nothing is spent then)."""
        now = self.clock()
        tokens, when = self.tokens.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) / self.period)
        ok = tokens >= 1
        self.tokens[address] = (tokens - 1 if ok else tokens, now)
        while len(self.tokens) > self.remembered:
            self.tokens.popitem(last=False)
        return ok

    def pace(self, address: str) -> float:
        """The seconds ``address``'s new session (within its budget) waits for its turn: one every 1/``per_second``."""
        now = self.clock()
        slot = max(now, self.slots.pop(address, now))
        self.slots[address] = slot + 1.0 / self.per_second
        while len(self.slots) > self.remembered:
            self.slots.popitem(last=False)
        return slot - now


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
        self.refused = self.refused_new = 0
        self.new_sessions = NewSessions()
        self.streams: dict[str, int] = {}  # session → its streams open now (``reading``)
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, seen at the first push

    @property
    def queue(self) -> Any:
        return self.blocks._queue

    def install(self) -> Turns:
        """Replace the queue's ``push`` with ours (Gradio's own size limit is turned off: ours are per kind), its table
        of sessions with ``Sessions``, its ``get_events`` with ``next_events`` (readers first, then by address), and
        its ``send_message`` with one that drops messages for a session that is gone (Gradio's raises ``KeyError``
        inside its queue loop) and sends a queue position only for a live run (Gradio sends every waiting event its
        position after each start and join: 3,000 messages a second to a flood's waiting replays in the classroom
        test, positions no replay shows)."""
        from gradio.server_messages import EstimationMessage

        queue = self.queue
        queue.max_size = None
        original, send, pick = queue.push, queue.send_message, queue.get_events

        async def push(body, request, username):  # noqa: ANN001, ANN202 - Gradio's signature
            return await self.push(original, body, request, username)

        def send_message(event, message):  # noqa: ANN001, ANN202 - Gradio's signature
            if isinstance(message, EstimationMessage) and not self.is_live(event.fn):
                return None
            if event.session_hash not in sessions:
                event.alive = False  # nobody can read it any more
                return None
            sessions.touch(event.session_hash)
            send(event, message)
            if event.alive:  # counted, so that Reader knows how many the visitor took
                messages = sessions[event.session_hash]
                messages.sent = getattr(messages, "sent", 0) + 1

        light_session_state()
        cheap_skips(self.blocks)
        sessions = Sessions(self.active_sessions)
        sessions.update(queue.pending_messages_per_session)
        queue.pending_messages_per_session = sessions

        def get_events():  # noqa: ANN202 - Gradio's signature
            return self.next_events(pick)

        queue.push, queue.send_message, queue.get_events = push, send_message, get_events
        self.blocks._spectral_turns = self
        return self

    def active_sessions(self) -> set[str]:
        """The sessions with an event waiting or running (or being pushed right now)."""
        return {e.session_hash for _, _, e in self.events()} | {s for _, s, _ in self.joining}

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

    def address(self, event: Any) -> str:
        """The address an event was queued from."""
        return getattr(event, "turns_address", None) or request_address(event.request, self.hops)

    @contextmanager
    def reading(self, session: str | None) -> Iterator[None]:
        """While a stream of ``session`` is open (``guards.RequestGuard`` wraps each one): its events are a reader's."""
        if not session:
            yield
            return
        self.streams[session] = self.streams.get(session, 0) + 1
        try:
            yield
        finally:
            if (left := self.streams.pop(session, 1) - 1) > 0:
                self.streams[session] = left

    def reads(self, event: Any) -> bool:
        """Whether the visitor of ``event`` has a stream open to read it."""
        return event.session_hash in self.streams

    def next_events(self, pick: Callable[[], Any]) -> tuple[list, bool, str] | None:
        """Gradio's ``get_events`` (``pick``) with our order: in a group with a free place (live runs aside: they go in
        turn), the first waiting event of a reader whose address has the fewest events running in the group starts
        next; an event nobody reads starts only when no reader's event waits there or runs anywhere (live runs aside)
        and fewer than UNREAD_RUNNING of those run in the group (a script's hundred replays wait for a quiet server)."""
        queue = self.queue
        free = [
            (cid, g)
            for cid, g in queue.event_queue_per_concurrency_id.items()
            if g.queue and (g.concurrency_limit is None or g.current_concurrency < g.concurrency_limit)
        ]
        if not free or any(getattr(g.queue[0].fn, "batch", False) for _, g in free):
            return pick()  # nothing to start, or a batch to gather: Gradio's own choice (this app has no batches)
        running: dict[tuple[Any, str], int] = {}
        unread: dict[Any, int] = {}
        busy = False  # a reader's event runs (not a live run: those run for minutes)
        for job in queue.active_jobs:
            for e in job or ():
                key = (e.concurrency_id, self.address(e))
                running[key] = running.get(key, 0) + 1
                if not self.reads(e):
                    unread[e.concurrency_id] = unread.get(e.concurrency_id, 0) + 1
                elif not self.is_live(e.fn):
                    busy = True
        random.shuffle(free)  # as Gradio: no group always goes first
        for cid, group in free:
            waiting = group.queue
            if self.is_live(waiting[0].fn):
                return [waiting.pop(0)], False, cid  # live runs go in turn
            readers = [i for i, e in enumerate(waiting) if self.reads(e)]
            if not readers and (busy or unread.get(cid, 0) >= UNREAD_RUNNING):
                continue
            counts = [running.get((cid, self.address(waiting[i])), 0) for i in readers or range(len(waiting))]
            best = (readers or range(len(waiting)))[counts.index(min(counts))]
            return [waiting.pop(best)], False, cid
        return None

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
        others = [(s, a) for lv, running, s, a in held if not lv and not running]
        if sum(1 for s, _ in others if s == session) >= OTHER_PER_SESSION:
            return OTHER_FULL
        if sum(1 for _, a in others if a == address) >= OTHER_PER_ADDRESS:
            return ADDRESS_BUSY
        if len(others) >= OTHER_WAITING:
            return SERVER_BUSY
        return None

    def holds(self, session: str, running: bool | None = None) -> bool:
        """Whether ``session`` has a live run in the queue (``running`` False: waiting; True: running; None: either)."""
        return any(lv and e.session_hash == session and (running is None or r == running) for lv, r, e in self.events())

    def new_session(self, session: str | None, address: str) -> tuple[int, str] | None:
        """Charge a session hash the queue does not know yet to its address's ``NewSessions`` budget: (HTTP status,
        line) when it is refused (beyond the budget, or every kept session busy), else None."""
        sessions = self.queue.pending_messages_per_session
        if session is not None and session in sessions:
            return None
        if not self.new_sessions.take(address):
            self.refused_new += 1
            return 429, NEW_SESSIONS_FULL
        if isinstance(sessions, Sessions) and sessions.full():
            self.refused_new += 1
            return 503, SERVER_BUSY
        return None

    async def push(self, original: Any, body: Any, request: Any, username: str | None) -> tuple:
        """Admit the event (Gradio's push) or answer it at once with our refusal. A session hash the queue does not
        know yet is first charged to its address's ``NewSessions`` budget: beyond it, or when every kept session is
        busy, the join is answered with an HTTP error and nothing is registered for it."""
        from fastapi import HTTPException
        from gradio import route_utils

        self.loop = asyncio.get_running_loop()
        address = request_address(request, self.hops)
        sessions = self.queue.pending_messages_per_session
        if isinstance(sessions, Sessions):
            sessions.touch(body.session_hash)
        checked = getattr(getattr(request, "state", None), NEW_SESSION_CHECKED, False)  # by guards.RequestGuard
        if not checked and (why := self.new_session(body.session_hash, address)) is not None:
            raise HTTPException(status_code=why[0], detail=why[1])
        try:
            fn = route_utils.get_fn(self.blocks, None, body)
        except Exception:  # noqa: BLE001 - an unknown function: Gradio's own push answers it
            return await original(body, request, username)
        live = self.is_live(fn)
        # no session hash (the /call/ API): a fresh one per request, so the address share still holds it
        session = body.session_hash or f"no-session-{id(body)}"
        why = self.refusal(live, session, address)
        if why is not None:
            self.refused += 1
            return self.refuse(fn, body, request, username, why)
        entry = (live, session, address)
        self.joining.append(entry)  # counted until the queue holds it: two joins at once cannot both pass
        try:
            answer = await original(body, request, username)
        finally:
            self.joining.remove(entry)
        if answer[0]:
            self.place(answer[1], address)
        return answer

    def place(self, event_id: str, address: str) -> None:
        """Fair queuing by address: the event just queued goes ahead of the first waiting event of its group that
        has more events of its own address before it (a script's hundred joins wait behind a student's one)."""
        event = self.queue.event_ids_to_events.get(event_id)
        group = self.queue.event_queue_per_concurrency_id.get(getattr(event, "concurrency_id", None))
        if event is None or group is None or not group.queue or group.queue[-1] is not event:
            return  # already started, or not in a queue of its own
        event.turns_address = address
        waiting = group.queue[:-1]
        addresses = [self.address(e) for e in waiting]
        mine = addresses.count(address)  # the new event's round: events of its address before it
        seen: dict[str, int] = {}
        for i, a in enumerate(addresses):
            seen[a] = seen.get(a, 0) + 1
            if seen[a] > mine + 1:  # the first event of a later round
                group.queue.insert(i, group.queue.pop())
                return

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

    def closed(self, session: str) -> bool:
        """Whether ``session``'s stream is gone: its message queue dropped, or its running live run marked dead (Gradio
        marks a session's events so when its stream disconnects)."""
        if session not in self.queue.pending_messages_per_session:
            return True
        return any(
            self.is_live(e.fn) and e.session_hash == session and not e.alive
            for job in self.queue.active_jobs
            for e in job or ()
        )

    def backlog(self, session: str | None) -> int:
        """Messages of ``session`` the visitor has not read yet (frames, heartbeats)."""
        if not session:
            return 0
        messages = self.queue.pending_messages_per_session.get(session)
        return 0 if messages is None else messages.qsize()

    def taken(self, session: str | None) -> int:
        """How many of the messages sent to ``session`` its visitor has read (heartbeats, which only an open stream
        gets, are not counted as sent: they can only make this smaller)."""
        messages = self.queue.pending_messages_per_session.get(session) if session else None
        return 0 if messages is None else getattr(messages, "sent", 0) - messages.qsize()


def turns_of(request: gr.Request | None) -> Turns | None:
    """The Turns installed on the app that ``request`` reached (None outside a served app)."""
    app = getattr(getattr(request, "request", None), "app", None)
    try:
        blocks = app.get_blocks() if app is not None else None
    except Exception:  # noqa: BLE001 - not a Gradio app
        return None
    return getattr(blocks, "_spectral_turns", None)


class Reader:
    """Whether the visitor of a live run still reads it: frames wait while MAX_BACKLOG messages are unread (a slow
    reader loses frames, never the run's end); the run is abandoned when the visitor's stream was closed, when it has
    read nothing within ABANDON_S (no stream was ever opened), or when a stream that read has read nothing for
    STALLED_S while messages wait."""

    def __init__(self, turns: Turns | None, session: str | None, clock: Any = time.monotonic) -> None:
        self.turns, self.session, self.clock = turns, session, clock
        self.taken = turns.taken(session) if turns is not None else 0
        self.last_backlog, self.last_read = 0, clock()
        self.has_read = False
        self.dropped = 0

    def ready(self) -> bool:
        """True when a new frame may be sent now."""
        if self.turns is None:
            return True
        self.check()
        if self.last_backlog >= MAX_BACKLOG:
            self.dropped += 1
            return False
        return True

    def check(self) -> None:
        """Read the visitor's progress: the messages waiting, and whether it took any since the last look."""
        taken, now = self.turns.taken(self.session), self.clock()
        if taken > self.taken:
            self.taken, self.last_read, self.has_read = taken, now, True
        self.last_backlog = self.turns.backlog(self.session)
        if self.last_backlog == 0:
            self.last_read = now

    def gone(self) -> bool:
        """True when nobody will read the run any more (see the class's docstring)."""
        if self.turns is None or not self.session:
            return False
        if self.turns.closed(self.session):
            return True
        self.check()
        patience = STALLED_S if self.has_read else ABANDON_S
        return self.last_backlog > 0 and self.clock() - self.last_read > patience
