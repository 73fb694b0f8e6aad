"""One live run of the lab: step one or two networks in lockstep and yield what they reached (demo.records);
demo.frames turns that into what the page shows."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from dip_core import Baseline, RunConfig, autotune, baseline, run, to_image
from dip_core.replay import SpectrumView
from dip_core.stacked import run_stacked, unstackable
from dip_core.stopping import task_noise_energy

from .inputs import RunRequest
from .records import Ending, RunData, Track, run_short
from .settings import LIMITS, Limits

SPECTRUM_SIDE = 96  # the 2-D spectrum view is average-pooled to at most this many frequencies a side
#: Stop flags are also files here, so that a run in another process (ZeroGPU's GPU worker) sees a Stop pressed
#: in the server's process.
STOP_DIR_ENV = "SPECTRAL_BIAS_LAB_STOP_DIR"


def stop_dir() -> Path:
    """This server's folder of stop flags: made once, private (mode 0700, a fresh name in the temp folder: nobody else
    on the machine can own or fill it), and passed to child processes (ZeroGPU's worker) through the environment."""
    if not os.environ.get(STOP_DIR_ENV):
        os.environ[STOP_DIR_ENV] = tempfile.mkdtemp(prefix="spectral-bias-lab-stops-")
    return Path(os.environ[STOP_DIR_ENV])


STOP_DIR = stop_dir()
#: A run with a GPU time limit ends this many seconds before it, to send its last frame and downloads.
GPU_RESERVE_S = 3.0


class StopFlag:
    """A run's stop flag: an event for runs in this process, and a file for a run in another one (ZeroGPU runs
    the generator in a GPU worker process); ``is_set`` looks at the file at most every 0.2 s."""

    def __init__(self, path: Path) -> None:
        self.path, self.event, self.checked = path, threading.Event(), 0.0

    def set(self) -> None:
        self.event.set()
        touch(self.path)

    def is_set(self) -> bool:
        if self.event.is_set():
            return True
        now = time.monotonic()
        if now - self.checked >= 0.2:
            self.checked = now
            if self.path.exists():
                self.event.set()
        return self.event.is_set()


def touch(path: Path) -> None:
    """Create ``path`` (and its folder); a read-only temp folder only loses the cross-process stop."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass


class StopRegistry:
    """One stop flag per running live run, keyed by its visitor's session, set by the Stop button and read by the
    run between steps; and the Stops pressed while a visitor's run still waited in the queue.

    A flag's file (for ZeroGPU's worker process) is named by a hash of the key, never by the key itself, exists
    only while its run does, and is removed when the run ends: at most one file per running run.
    """

    #: Stops remembered for runs that have not started yet (one per waiting run at most; the oldest are forgotten).
    MAX_PENDING = 64

    def __init__(self, folder: Path = STOP_DIR) -> None:
        self.folder = folder
        self._flags: dict[str, StopFlag] = {}
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        """The flag file of ``key``: a fixed-length hash, whatever the key holds."""
        return self.folder / hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]

    def start(self, key: str) -> StopFlag:
        """A fresh flag for a run starting under ``key`` (a stale file from an earlier run is removed)."""
        flag = StopFlag(self.path(key))
        flag.path.unlink(missing_ok=True)
        with self._lock:
            self._flags[key] = flag
        return flag

    def flag(self, key: str) -> StopFlag:
        """The flag of the run under ``key``: this process's, else one that reads the file (ZeroGPU's worker)."""
        with self._lock:
            flag = self._flags.get(key)
        return flag if flag is not None else StopFlag(self.path(key))

    def stop(self, key: str, waiting: bool = False) -> bool:
        """Ask the run under ``key`` to stop; ``waiting``: the visitor's run is still in the queue, so it must not
        start. False when there is no such run."""
        with self._lock:
            flag = self._flags.get(key)
            if flag is None and waiting:
                self._pending[key] = time.monotonic()
                while len(self._pending) > self.MAX_PENDING:
                    del self._pending[next(iter(self._pending))]
        if flag is not None:
            flag.set()
        return flag is not None or waiting

    def stopped_before_start(self, key: str) -> bool:
        """Whether Stop was pressed while the run under ``key`` waited (and forget it)."""
        with self._lock:
            return self._pending.pop(key, None) is not None

    def finish(self, key: str, flag: StopFlag) -> None:
        """Forget the flag of a run that ended and remove its file."""
        with self._lock:
            if self._flags.get(key) is flag:
                del self._flags[key]
        flag.path.unlink(missing_ok=True)

    def active(self) -> int:
        """How many runs are going on."""
        with self._lock:
            return len(self._flags)


STOPS = StopRegistry()


class Latest:
    """A one-place slot between the thread that steps a run and the one that shows it: ``put`` replaces what was not
    taken yet, ``take`` waits for an update (None once closed and empty; raises what the stepping thread raised)."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._item: RunData | None = None
        self._error: BaseException | None = None
        self._closed = False

    def put(self, item: RunData) -> None:
        with self._ready:
            self._item = item
            self._ready.notify()

    def fail(self, error: BaseException) -> None:
        with self._ready:
            self._error = error

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def take(self) -> RunData | None:
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed)
            item, self._item = self._item, None
            if item is None and self._error is not None:
                raise self._error
            return item


def on_event_loop() -> bool:
    """Whether this thread is running an asyncio event loop (the server's: nothing there may wait for a step)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LabRun:
    """A run of one (controlled) or two (vanilla + controlled, lockstep) networks on the same task and seed;
    ``stream()`` yields what they reached as plain records (demo.records.RunData)."""

    def __init__(
        self,
        request: RunRequest,
        stop: Callable[[], bool] | None = None,
        limits: Limits = LIMITS,
        gpu_seconds: float | None = None,
    ) -> None:
        """``gpu_seconds``: the GPU time the call asked for (ZeroGPU cuts it off there); the run ends just before.
        Without it the run ends at the device's time limit (``limits.run_seconds``)."""
        self.created = time.perf_counter()
        self.request, self.limits, self.gpu_seconds = request, limits, gpu_seconds
        self.time_limit = gpu_seconds - GPU_RESERVE_S if gpu_seconds is not None else limits.run_seconds
        self.stop = stop or (lambda: False)
        task = request.task
        self.observation = to_image(task.observation)
        self.clean = None if task.clean is None else to_image(task.clean)
        self.baseline: Baseline = baseline(task)  # the classical (OpenCV) result, from the observation only
        self.spectrum = SpectrumView(task, SPECTRUM_SIDE)  # before the run moves the task to its device
        # the noise-level auto-stop's threshold, drawn on the curves when that rule is on
        discrepancy = any(c.auto_stop == "discrepancy" for c in request.configs.values())
        self.noise_energy = task_noise_energy(task) if discrepancy else None
        configs = self.resolved(request.configs)
        self.tracks = {n: Track(n, run_short(n, request.compare), c) for n, c in configs.items()}
        self.iterations = max(c.iterations for c in request.configs.values())
        self.rounds = 0
        self.started = self.ended = None
        self.cancelled = self.out_of_time = self.abandoned = False

    def resolved(self, configs: dict[str, RunConfig]) -> dict[str, RunConfig]:
        """The configs with their ``auto`` choices made (the device, the convolution path timed on this machine),
        so the downloads say what ran. Timed one after the other with the threads each network will have: one
        apiece when a compare run's two networks step side by side on CPU, else this process's."""
        side_by_side = len(configs) == 2 and self.limits.device == "cpu"
        threads = torch.get_num_threads()
        task = self.request.task
        try:
            if side_by_side:
                torch.set_num_threads(1)
            return {n: autotune.resolve(task, c) for n, c in configs.items()}  # dip_core's one place for it
        finally:
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------ stepping

    def _cancelled(self) -> bool:
        if self.abandoned:
            return True
        if self.stop():
            self.cancelled = True
        elif self.time_limit is not None and time.perf_counter() - self.created > self.time_limit:
            self.cancelled = self.out_of_time = True
        return self.cancelled

    def stacks(self) -> bool:
        """Whether this run's networks step as one (dip_core.stacked): a compare run where the device's limits
        say so (on a GPU; on CPU two threads were faster) and the two configs allow it."""
        if not self.limits.stacked or len(self.tracks) != 2:
            return False
        return unstackable([t.config for t in self.tracks.values()]) is None  # resolved when the tracks were made

    def steps(self) -> Iterator[int]:
        """Advance every unfinished run by one snapshot, in lockstep; yields the round number.

        On a GPU a compare run's two networks are stacked into one (one step, one CUDA graph for both). On CPU
        two runs advance at once on one core each (one torch thread apiece): on 2 cores that beats running them
        one after the other on two threads, and it does not stall when other jobs load the CPU. Each run draws
        its network from its own seeded generator, so they are built at once too.
        """
        self.started = time.perf_counter()
        try:
            yield from self._stacked_steps() if self.stacks() else self._separate_steps()
        finally:
            self.ended = time.perf_counter()

    def _stacked_steps(self) -> Iterator[int]:
        names = list(self.tracks)
        gen = run_stacked(self.request.task, [t.config for t in self.tracks.values()], cancel=self._cancelled)
        try:
            for snaps in gen:  # run_stacked ends once every network is done
                for name, snap in zip(names, snaps):
                    if snap is not None:
                        self.tracks[name].add(snap)
                self.rounds += 1
                yield self.rounds
        finally:
            gen.close()

    def _separate_steps(self) -> Iterator[int]:
        task = self.request.task
        gens = {n: run(task, t.config, cancel=self._cancelled) for n, t in self.tracks.items()}
        parallel = len(gens) == 2 and self.limits.device == "cpu"
        threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,)) if parallel else None
        try:
            if parallel:
                torch.set_num_threads(1)
            while not all(t.done for t in self.tracks.values()):
                active = [(n, g) for n, g in gens.items() if not self.tracks[n].done]
                if pool is not None and len(active) == 2:
                    snaps = list(pool.map(lambda g: next(g, None), [g for _, g in active]))
                else:
                    snaps = [next(g, None) for _, g in active]
                for (name, _), snap in zip(active, snaps):
                    self.tracks[name].add(snap)  # dip_core.run always ends with a snapshot marked done
                self.rounds += 1
                yield self.rounds
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
                torch.set_num_threads(threads)
            for gen in gens.values():
                gen.close()

    def updates(self, abandoned: Callable[[], bool] = lambda: False) -> Iterator[RunData]:
        """Step the run and yield what it reached: the first rounds, then at most every ``update_seconds``, and the
        last. ``abandoned()`` (asked each round) True: nobody reads any more, the run ends at its next step."""
        last = 0.0
        for rounds in self.steps():
            self.abandoned = self.abandoned or abandoned()
            done = all(t.done for t in self.tracks.values())
            now = time.perf_counter()
            if done or rounds <= 3 or now - last >= self.limits.update_seconds:
                last = now
                yield self.data(done)

    def stream(self) -> Iterator[RunData]:
        """The run as it goes (``updates``).

        The networks step apart from the caller, in a worker process (``limits.worker``: demo/worker.py) or a thread,
        and leave each update in a one-place slot: while the caller turns an update into pictures and sends it, the
        steps go on (done in turn, the views held both networks still: a fifth of a default CPU run), and an update
        the caller had no time for is replaced by the next one, never queued. Closing the stream ends the run at its
        next step."""
        slot, threads = Latest(), torch.get_num_threads()

        def produce() -> None:
            torch.set_num_threads(threads)  # the caller's: a new thread starts with torch's default
            try:
                for data in self.updates():
                    slot.put(data)
            except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
                slot.fail(err)
            finally:
                slot.close()

        target = (lambda: self.relay(slot, threads)) if self.limits.worker else produce
        worker = threading.Thread(target=target, name="lab-run-steps", daemon=True)
        worker.start()
        try:
            while (data := slot.take()) is not None:
                yield data
        finally:
            self.abandoned = True  # the caller stopped reading: _cancelled ends the run at its next step
            if not on_event_loop():  # Gradio closes a cancelled stream on its event loop: never wait there
                worker.join()

    #: What a worker process sends back of its copy of the run besides its updates.
    MIRRORED = ("rounds", "started", "ended", "cancelled", "out_of_time")

    def relay(self, slot: Latest, threads: int) -> None:
        """``produce`` in a worker process (demo/worker.py): this run's state goes there, its updates come back into
        ``slot`` (with this process's request and images); a Stop or a reader gone is passed on."""
        from .worker import WORKERS

        state = {k: v for k, v in vars(self).items() if k != "stop"}
        reusable, proc = False, None

        def put(message: tuple) -> None:
            data, mirrored = message
            vars(self).update(mirrored)
            if data is not None:
                self.tracks = data.tracks
                slot.put(
                    dataclasses.replace(
                        data, request=self.request, observation=self.observation, baseline=self.baseline
                    )
                )

        def asked() -> str | None:
            return "abandon" if self.abandoned else "stop" if self.stop() else None

        try:
            proc = WORKERS.take()
            reusable = proc.relay(state, threads, put, slot.fail, asked)
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            slot.fail(err)
        finally:
            self.ended = self.ended or time.perf_counter()
            slot.close()
            if proc is not None:
                WORKERS.give(proc) if reusable else proc.close()

    # ------------------------------------------------------------------ what it reached

    @property
    def current_iter(self) -> int:
        """The furthest network's latest logged iteration."""
        return max((t.last.iter for t in self.tracks.values() if t.last is not None), default=0)

    def data(self, done: bool = False) -> RunData:
        """The run now: each track's rows and latest snapshot, its spectrum, the iteration, timing, and how it ended."""
        now = time.perf_counter()
        elapsed = max(1e-9, (self.ended if done and self.ended else now) - (self.started or 0))
        return RunData(
            request=self.request,
            tracks={name: t.copy() for name, t in self.tracks.items()},
            observation=self.observation,
            clean=self.clean,
            baseline=self.baseline,
            spectra={n: self.spectrum(t.last.fit) for n, t in self.tracks.items() if t.last and t.last.fit is not None},
            iterations=self.iterations,
            noise_energy=self.noise_energy,
            iteration=self.current_iter,
            elapsed=elapsed,
            running=now - self.created,
            time_limit=self.time_limit,
            gpu_seconds=self.gpu_seconds,
            done=done,
            ending=self.ending(elapsed) if done else None,
        )

    def ending(self, elapsed: float) -> Ending:
        """Why the run ended: a network's message first, then the time limits, a Stop, the auto-stop, the budget."""
        it = self.current_iter
        messages = [t.last.message for t in self.tracks.values() if t.last.message]
        if messages:
            return Ending("message", it, elapsed, message=messages[0])
        if self.out_of_time:
            return Ending("gpu_time" if self.gpu_seconds is not None else "time_limit", it, elapsed)
        if self.cancelled:
            return Ending("stopped", it, elapsed)
        ctrl = self.tracks["controlled"].last
        if ctrl.stopped:
            return Ending("auto_stop", it, elapsed, stop_iter=ctrl.stop_iter)
        return Ending("complete", it, elapsed)
