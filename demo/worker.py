"""A live run's steps in a process of its own: on a CPU server the networks' steps (Python between small tensor
operations, holding the interpreter's lock most of the time) would otherwise take the server's interpreter from every
page, scrub and Play frame of a class. ``Workers`` keeps started processes for the next run; ``Worker.run`` streams
what the run reached, as ``demo.session.LabRun`` would in a thread."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

#: Started processes kept for the next runs (each holds torch: about 250 MB); more runs at once start more.
IDLE_WORKERS = 1
LOST = "the run's worker process ended unexpectedly: try again"


class WorkerLost(RuntimeError):
    """The worker process of a run died (killed, out of memory): the run ends with LOST, one line."""


#: The worker's niceness: a run's steps are batch work, a page's events are not; on a server's few cores the scheduler
#: gives the server's process the cores first (a process of its own: no lock shared with the server to invert).
#: SPECTRAL_BIAS_LAB_WORKER_NICE sets another: the test suite's 0 (tests/conftest.py), where the cores' other user
#: is the suite's second process, not this server, and at nice 10 a run stepped at 1/20 of its pace beside it.
NICE = int(os.environ.get("SPECTRAL_BIAS_LAB_WORKER_NICE", "10"))
READY_S = 120.0  # a new worker's imports (torch) take seconds; a loaded machine, more


def serve(conn: Connection) -> None:
    """The worker process: run each LabRun sent (its state, without its stop), one at a time, and send its updates."""
    try:
        os.nice(NICE)
    except OSError:  # not allowed here: the steps share the cores equally
        pass
    import torch  # imported before the first run arrives: a warm worker is ready

    from dip_core import tasks

    from . import session  # noqa: F401

    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if isinstance(message, str):  # a Stop or "reader gone" that crossed its run's end: nothing to stop now
            continue
        paths, threads, state = message
        torch.set_num_threads(threads)
        tasks.__path__[:] = paths  # a task module the server found on its search path is found here too
        try:
            state = pickle.loads(state)
        except Exception as err:  # noqa: BLE001 - the server hears it, the worker serves on
            conn.send(("error", RuntimeError(f"the run could not be sent to its worker process: {err}")))
            continue
        run_one(conn, state)


def run_one(conn: Connection, state: dict) -> None:
    """One run: ("data", (update, mirrored)) per update, then ("end", (None, mirrored)) or ("error", err)."""
    from .session import LabRun

    lab, asked = LabRun.__new__(LabRun), []
    lab.__dict__.update(state)

    def told(what: str) -> bool:
        while conn.poll():
            asked.append(conn.recv())
        return what in asked

    def mirrored() -> dict:
        return {k: getattr(lab, k) for k in LabRun.MIRRORED}

    lab.stop = lambda: told("stop")
    try:
        for update in lab.updates(abandoned=lambda: told("abandon")):
            sent = dataclasses.replace(update, request=None, observation=None, baseline=None)  # the server has them
            conn.send(("data", (sent, mirrored())))
        conn.send(("end", (None, mirrored())))
    except BaseException as err:  # noqa: BLE001 - raised again in the server's process
        conn.send(("error", err if picklable(err) else RuntimeError(str(err))))


def picklable(err: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001
        return False
    return True


class Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child,), name="lab-run-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout: float = READY_S) -> bool:
        """Wait until the process has its imports done (True), or has died or taken ``timeout`` seconds (False)."""
        if not self.ready and self.conn.poll(timeout):
            try:
                self.ready = self.conn.recv()[0] == "ready"
            except (EOFError, OSError):
                return False
        return self.ready and self.alive()

    def alive(self) -> bool:
        return self.process.is_alive()

    def relay(self, state: dict, threads: int, put: Callable[[Any], None], fail: Callable, stop: Callable) -> bool:
        """Send a run and pass each (update, mirrored fields) to ``put`` until it ends (the last without an update;
        ``fail`` gets its error); ``stop()`` is polled ("stop", "abandon" or None). True: it may serve again."""
        from dip_core import tasks

        self.conn.send((list(tasks.__path__), threads, pickle.dumps(state)))
        told: set[str] = set()
        while True:
            if (what := stop()) and what not in told:
                told.add(what)
                self.conn.send(what)
            if not self.conn.poll(0.05):
                if not self.alive():
                    fail(WorkerLost(LOST))
                    return False
                continue
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                fail(WorkerLost(LOST))
                return False
            if kind == "error":
                fail(payload)
                return True
            put(payload)
            if kind == "end":
                return True

    def close(self) -> None:
        self.conn.close()
        self.process.terminate()


class Workers:
    """Started worker processes waiting for a run (at most IDLE_WORKERS kept)."""

    def __init__(self) -> None:
        self.idle: list[Worker] = []
        self.lock = threading.Lock()

    def take(self) -> Worker:
        """A ready worker: a kept one, else a new one (its start, seconds, counts in the run's clock)."""
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.wait_ready():
                    return worker
                worker.close()
        worker = Worker()
        if not worker.wait_ready():
            worker.close()
            raise WorkerLost(LOST)
        return worker

    def give(self, worker: Worker) -> None:
        with self.lock:
            if worker.alive() and len(self.idle) < IDLE_WORKERS:
                self.idle.append(worker)
                return
        worker.close()

    def warm(self, wait: bool = False) -> None:
        """Start a worker now, so that the first run does not wait for its imports (``wait``: until it is ready)."""
        if wait:
            self.give(self.take())
        else:
            threading.Thread(target=self.warm, args=(True,), name="lab-run-worker-start", daemon=True).start()


WORKERS = Workers()
