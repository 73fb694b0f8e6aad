"""The one run loop for every task: fit the decoder to A f(z) ≈ y and stream snapshots.

``run`` reads top to bottom: a ``Stepper`` takes one training step (eager, or replayed from a CUDA graph),
a ``Recorder`` keeps the per-step values a stop rule or a benchmark asks for on the device and fetches them
in batches, a ``Meter`` turns the current output into a ``Snapshot`` with one host sync, and a ``Watch`` says
when a snapshot is due (``dip_core.stacked`` keeps one per network of a stack).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import metrics
from .bound import LearnedBounds
from .config import RunConfig, check_device
from .layers import POWER_WARMUP_STEPS
from .machine import keep_freed_memory
from .nets import Decoder, fourier_input
from .stopping import StopRule, stop_for
from .tasks import Task, to_image

__all__ = [
    "Meter",
    "Recorder",
    "RunState",
    "Snapshot",
    "Stepper",
    "Watch",
    "build",
    "check_resolved",
    "forward",
    "graph_start",
    "run",
    "run_to_end",
]

#: Backtracking restores the last saved weights when the loss grows by more than this factor (5 dB).
BACKTRACK_FACTOR = 10**0.5
#: Per-step values are fetched from the device at least this often (bounded memory, one sync per batch).
FETCH_BATCH = 256


@dataclass
class Snapshot:
    """The state of a run at one logged iteration (what every front end consumes)."""

    iter: int
    image: np.ndarray | None  # H×W×C float32 in [0, 1]: the current result
    loss: float
    fbc: list[float]  # against the observation (in observation space: A f(z) vs y)
    fbc_clean: list[float] | None  # against the clean image, when known
    psnr: float | None
    ssim: float | None
    ratio: float  # blurriness / sharpness of the result
    seconds: float
    stopped: bool = False  # the automatic stop fired (a user's cancel is not a stop: see ``run``)
    stop_iter: int | None = None
    done: bool = False  # the last snapshot of the run
    message: str | None = None  # why the run ended early (non-finite loss), if it did
    best_psnr: float | None = None
    best_iter: int | None = None
    fit: np.ndarray | None = None  # the network's own output f(z) when the result post-processes it (enhancement)
    bound: float | None = None  # learned bounds: their geometric mean over the layers at this step
    # (t, value) of every step since the previous snapshot, when measured each step: the ratio for a ratio
    # auto-stop, the loss for the discrepancy one, all three (PSNR with a known clean image) with measure_every_step
    step_ratios: list[tuple[int, float]] = field(default_factory=list)
    step_psnrs: list[tuple[int, float]] = field(default_factory=list)
    step_losses: list[tuple[int, float]] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and bool(np.isfinite(self.image).all())

    def record(self) -> dict:
        """The JSON-ready log line (no image)."""
        keys = ("iter", "loss", "psnr", "ssim", "fbc", "fbc_clean", "ratio", "seconds")
        return {k: getattr(self, k) for k in keys} | ({} if self.bound is None else {"bound": self.bound})


@dataclass
class RunState:
    """The network, its fixed input z, the crop of its output to the task's size, the optimizer, the device."""

    net: Decoder
    z: torch.Tensor
    crop: tuple[int, int, int, int]
    optimizer: torch.optim.Optimizer
    device: torch.device


def check_resolved(config: RunConfig) -> RunConfig:
    """``config`` if its device and convolution path are chosen; ``auto`` is a programmer's error here: the choice is
    made once, before a run is built, by ``dip_core.resolve`` (``dip_core.run`` calls it)."""
    for name in ("device", "conv_algo"):
        if getattr(config, name) == "auto":
            raise ValueError(f'{name}="auto" reached the engine: resolve the config first (dip_core.resolve)')
    check_device(config.device)
    return config


def build(task: Task, config: RunConfig) -> RunState:
    """Build the decoder (weights drawn from a generator seeded with ``config.seed``, not the global RNG) and
    its input for ``task`` on the configured device."""
    device = torch.device(check_resolved(config).device)
    net = Decoder(
        task.channels,
        width=config.width,
        depth=config.depth,
        upsample=config.upsample,
        lipschitz=config.lipschitz,
        gaussian_sigma=config.gaussian_sigma,
        padding=config.padding,
        sn_method=config.sn_method,
        power_iters=config.power_iters,
        conv_algo=config.conv_algo,
        generator=torch.Generator().manual_seed(config.seed),
    )
    m = net.multiple
    h, w = task.out_size
    # at least a 2×2 input grid: reflection padding needs more than one pixel at the coarsest level
    hp, wp = max(2, math.ceil(h / m)) * m, max(2, math.ceil(w / m)) * m
    crop = ((hp - h) // 2, (wp - w) // 2, h, w)
    z = fourier_input(hp // m, wp // m, net.in_channels, torch.Generator().manual_seed(config.seed))
    net, z = net.to(device), z.to(device)
    if device.type == "cpu":
        keep_freed_memory()  # each step reuses the last one's freed activations (dip_core/machine.py)
    if config.channels_last:
        net, z = net.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    task.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest conv algorithms
    graphed = config.cuda_graph and device.type == "cuda"
    # foreach: one multi-tensor update instead of a Python loop over the parameters (the same arithmetic, bit for
    # bit; a tenth of the dispatches, which matters most when two runs share the interpreter in the app)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, capturable=graphed, foreach=True)
    return RunState(net, z, crop, optimizer, device)


def forward(
    state: RunState, config: RunConfig, z: torch.Tensor | None = None, cache_casts: bool = True
) -> torch.Tensor:
    """f(z) cropped to the task's output size, in fp32 (``cache_casts=False`` while capturing a graph)."""
    autocast = (
        torch.autocast(state.device.type, dtype=torch.bfloat16, cache_enabled=cache_casts)
        if config.precision == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        out = state.net(state.z if z is None else z)
    top, left, h, w = state.crop
    return out[..., top : top + h, left : left + w].float()


class GraphStep:
    """The whole training step (forward, loss, backward, Adam) captured once as a CUDA graph, then replayed.

    Removes the per-kernel launch cost that dominates a GPU step. Captured after the power iteration's
    warm-up, so the graph holds its steady-state iteration count; the capture itself performs the step.
    """

    def __init__(self, state: RunState, config: RunConfig, task: Task) -> None:
        device = state.device
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm the capture stream (library handles) without an update
            state.optimizer.zero_grad(set_to_none=True)
            task.loss(forward(state, config, cache_casts=False)).backward()
            state.optimizer.zero_grad(set_to_none=True)  # grads are then allocated in the graph's pool
        torch.cuda.current_stream(device).wait_stream(stream)
        torch.cuda.synchronize(device)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other runs (other app sessions) may use the GPU from their threads meanwhile
        with torch.cuda.graph(self.graph, stream=stream, capture_error_mode="thread_local"):
            self.out = forward(state, config, cache_casts=False)
            self.loss = task.loss(self.out)
            self.loss.backward()
            state.optimizer.step()
        self.graph.replay()  # the capture only recorded: this performs the step

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.graph.replay()
        return self.out, self.loss


def graph_start(config: RunConfig) -> int | None:
    """The step at which ``run`` captures its CUDA graph, or None when the run stays eager."""
    if not config.cuda_graph or config.reg_noise_std > 0 or config.backtrack or config.bound != "fixed":
        return None  # fresh noise each step, a host sync each step, or bounds a graph would replay as captured
    lams = [config.lipschitz] if isinstance(config.lipschitz, (int, float)) else config.lipschitz
    if not any(lam > 0 for lam in lams):
        return 4
    # an exact SVD checks its result on the host: not capturable
    return POWER_WARMUP_STEPS + 1 if config.sn_method == "power" else None


class Stepper:
    """One training step of the decoder on the task, with the original DIP's optional tricks: noise on the
    input (``reg_noise_std``), an average of the outputs (``ema``) and backtracking (``backtrack``)."""

    def __init__(self, state: RunState, config: RunConfig, task: Task) -> None:
        self.state, self.config, self.task = state, config, task
        self.capture_at = graph_start(config) if state.device.type == "cuda" else None
        self.graph: GraphStep | None = None
        noisy = config.reg_noise_std > 0
        self.noise = torch.Generator(device=state.device).manual_seed(config.seed + 1) if noisy else None
        self.average: torch.Tensor | None = None
        self.saved: list[torch.Tensor] | None = None  # backtracking's copy of the weights (at each snapshot)
        self.last_loss = math.inf

    def __call__(self, t: int, last: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Step t: (the output shown — the average with ``ema`` —, its loss), both detached; None when
        backtracking undid the step. A jump on the last step still returns the restored weights' output."""
        out, loss = self._forward_backward(t)
        restored = False
        if self.config.backtrack:
            value = loss.item()  # backtracking needs the loss on the host: one sync per step
            if self.saved is not None and value > BACKTRACK_FACTOR * self.last_loss:
                with torch.no_grad():
                    for p, s in zip(self.state.net.parameters(), self.saved):
                        p.copy_(s)
                if not last:
                    return None
                restored = True  # the run still ends with a snapshot, of the restored weights
                with torch.no_grad():
                    out = forward(self.state, self.config, self.state.z)
                    loss = self.task.loss(out)
            else:
                self.last_loss = value
        if self.graph is None and not restored:
            self.state.optimizer.step()
        out = out.detach()
        if self.config.ema > 0:
            ema = self.config.ema
            self.average = out.clone() if self.average is None else self.average.mul_(ema).add_(out, alpha=1 - ema)
        return (self.average if self.average is not None else out), loss.detach()

    def _forward_backward(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        state, config = self.state, self.config
        if self.graph is None and t == self.capture_at:
            try:
                self.graph = GraphStep(state, config, self.task)
            except Exception as err:  # any capture failure: stay eager (same results, slower)
                warnings.warn(f"CUDA graph capture failed, running eagerly: {err}", RuntimeWarning, stacklevel=3)
                self.capture_at = None
                torch.cuda.synchronize(state.device)
            else:
                return self.graph.out, self.graph.loss
        elif self.graph is not None:
            return self.graph.step()
        state.optimizer.zero_grad(set_to_none=True)
        z = state.z
        if self.noise is not None:
            fmt = torch.channels_last if config.channels_last else torch.contiguous_format
            z = z + config.reg_noise_std * torch.randn(z.shape, generator=self.noise, device=state.device).to(
                memory_format=fmt
            )
        out = forward(state, config, z)
        loss = self.task.loss(out)
        loss.backward()
        return out, loss

    def checkpoint(self) -> None:
        """Backtracking: keep a copy of the weights (called at each good snapshot)."""
        if self.config.backtrack:
            self.saved = [p.detach().clone() for p in self.state.net.parameters()]


class Meter:
    """What a snapshot reports about the output shown: loss, FBC against y (and x), PSNR/SSIM and the
    blur/sharpness ratio, fetched in one host sync; it keeps the best PSNR so far."""

    def __init__(self, task: Task, device: torch.device) -> None:
        self.task = task
        self.dtype = torch.float64 if device.type == "cpu" else torch.float32  # the metrics' precision
        self.fbc_obs = metrics.FrequencyBandMeter(task.observation[0].to(self.dtype))
        self.fbc_clean = metrics.FrequencyBandMeter(task.clean[0].to(self.dtype)) if task.clean is not None else None
        self.best_psnr, self.best_iter = -math.inf, None

    def ratio(self, result: torch.Tensor) -> torch.Tensor:
        """r = blurriness / sharpness of a result (a 0-d tensor on its device)."""
        return metrics.ratio_t(metrics.grayscale_t(result[0].to(self.dtype)))

    def __call__(self, t: int, shown: torch.Tensor, loss: torch.Tensor, seconds: float) -> Snapshot:
        task, clean = self.task, self.task.clean
        with torch.no_grad():
            result = task.finish(shown)
            scalars = [loss.float(), self.ratio(result).float()]
            vectors = [self.fbc_obs(task.operator(shown)[0].to(self.dtype)).float()]  # A f(z) against y
            if clean is not None:
                scalars += [metrics.psnr_t(result, clean).float(), metrics.ssim_t(result[0], clean[0]).float()]
                vectors.append(self.fbc_clean(result[0].to(self.dtype)).float())
            host = torch.cat([torch.stack(scalars), *vectors]).cpu().tolist()  # the one sync per snapshot
            image = to_image(result)
            fit = image if result is shown else to_image(shown)
        n = len(scalars)
        psnr, ssim = (host[2], host[3]) if clean is not None else (None, None)
        if psnr is not None and psnr > self.best_psnr:
            self.best_psnr, self.best_iter = psnr, t
        best = None if self.best_iter is None else self.best_psnr
        return Snapshot(
            iter=t,
            image=image,
            loss=host[0],
            fbc=host[n : n + 5],
            ratio=host[1],
            seconds=seconds,
            fbc_clean=host[n + 5 :] if clean is not None else None,
            psnr=psnr,
            ssim=ssim,
            best_psnr=best,
            best_iter=self.best_iter,
            fit=fit,
        )


class Recorder:
    """Per-step values kept on the device and fetched in batches (at each snapshot, or every FETCH_BATCH steps):
    the signal the stop rule subscribes to (``rule.signal``: "ratio" or "loss"), or all of them when
    ``measure_every_step`` (which also pays for a per-step FBC, so benchmarks charge the paper's full cost)."""

    ORDER = ("psnr", "ratio", "loss")

    def __init__(self, task: Task, config: RunConfig, rule: StopRule | None, meter: Meter) -> None:
        self.task, self.rule, self.meter, self.every_step = task, rule, meter, config.measure_every_step
        wanted = set(self.ORDER) if self.every_step else {rule.signal} if rule is not None else set()
        if task.clean is None:
            wanted.discard("psnr")
        self.pending: dict[str, list[tuple[int, torch.Tensor]]] = {s: [] for s in self.ORDER if s in wanted}
        self.fetched: dict[str, list[tuple[int, float]]] = {s: [] for s in self.ORDER}

    def record(self, t: int, shown: torch.Tensor, loss: torch.Tensor) -> None:
        """Keep step t's values (device tensors: no sync)."""
        if "loss" in self.pending:
            self.pending["loss"].append((t, loss.clone()))  # a copy: a CUDA graph reuses its loss tensor
        if "ratio" in self.pending:
            with torch.no_grad():
                result = self.task.finish(shown)
                self.pending["ratio"].append((t, self.meter.ratio(result)))
                if self.every_step:
                    self.meter.fbc_obs(self.task.operator(shown)[0].to(self.meter.dtype))
                    if "psnr" in self.pending:
                        self.pending["psnr"].append((t, metrics.psnr_t(result, self.task.clean)))

    def flush(self, due: bool) -> int | None:
        """Fetch what is pending when a snapshot is due (or a batch is full); the step at which the stop rule
        fired among them, if it did."""
        fired = None
        for signal, pending in self.pending.items():
            if not pending or not (due or len(pending) >= FETCH_BATCH):
                continue
            values = torch.stack([v for _, v in pending])
            values = (values.float() if signal == "loss" else values).cpu().tolist()  # one batched fetch
            steps = [t for t, _ in pending]
            pending.clear()
            for t, v in zip(steps, values):
                self.fetched[signal].append((t, v))
                if fired is None and self.rule is not None and self.rule.signal == signal and self.rule.update(t, v):
                    fired = t
        return fired

    def take(self) -> dict[str, list[tuple[int, float]]]:
        """The values fetched since the last call, as Snapshot fields."""
        out = {
            "step_psnrs": self.fetched["psnr"],
            "step_ratios": self.fetched["ratio"],
            "step_losses": self.fetched["loss"],
        }
        self.fetched = {s: [] for s in self.ORDER}
        return out


class Watch:
    """One network's snapshots: each step's values go to its Recorder; a Snapshot comes out when one is due or
    its stop rule fired, and when the loss became non-finite, the last good one again, marked done."""

    def __init__(self, task: Task, config: RunConfig, rule: StopRule | None, device: torch.device) -> None:
        self.meter = Meter(task, device)
        self.recorder = Recorder(task, config, rule, self.meter)
        self.every, self.last_good, self.done = config.every, None, False
        self.start = time.perf_counter()

    def __call__(self, t: int, shown: torch.Tensor, loss: torch.Tensor, last: bool, cancelled: bool) -> Snapshot | None:
        """Step t's output and loss (device tensors); the snapshot of step t, if there is one."""
        self.recorder.record(t, shown, loss)
        due = t % self.every == 0 or t == 1 or last or cancelled
        fired = self.recorder.flush(due)
        if not due and fired is None:
            return None
        snap = self.meter(t, shown, loss, time.perf_counter() - self.start)
        self.done = True
        if not snap.finite:  # a new snapshot: the last good one was already yielded with its per-step values
            message = f"stopped at iteration {t}: the loss became non-finite"
            return replace(
                self.last_good or snap, done=True, message=message, step_ratios=[], step_psnrs=[], step_losses=[]
            )
        stopped = fired is not None
        snap = self.last_good = replace(
            snap, **self.recorder.take(), stopped=stopped, stop_iter=fired, done=stopped or last or cancelled
        )
        self.done = snap.done
        return snap


def run(
    task: Task,
    config: RunConfig,
    cancel: Callable[[], bool] | None = None,
    on_step: Callable[[int], object] | None = None,
) -> Iterator[Snapshot]:
    """Fit the decoder to ``task`` with a resolved ``config`` (``dip_core.run`` resolves it); yield a Snapshot every
    ``config.every`` steps and a final one.

    The caller may end the run by closing the generator, or between steps with ``cancel()`` returning True
    (the final snapshot then holds the image reached). No host sync happens between snapshots unless
    backtracking is on. ``on_step(t)``, if given, is called right after each step that happened, before its
    values are recorded (the benchmarks time steps with it; it must not sync the host itself to keep that true).
    """
    rule = stop_for(config.auto_stop, config.iterations, task)
    state = build(task, config)
    step = Stepper(state, config, task)
    watch = Watch(task, config, rule, state.device)
    learned = LearnedBounds.for_run(state.net, task, config) if config.bound == "learned" else None
    for t in range(1, config.iterations + 1):
        last = t == config.iterations
        if learned is not None:
            learned.apply(state.net)
        stepped = step(t, last)
        if learned is not None:
            learned.step(stepped is not None)
        if stepped is None:  # backtracking restored the weights: this step did not happen
            continue
        if on_step is not None:
            on_step(t)
        snap = watch(t, *stepped, last=last, cancelled=cancel is not None and cancel())
        if snap is None:
            continue
        if learned is not None:
            snap = replace(snap, bound=learned.mean())
        if snap.message is None:
            step.checkpoint()
        yield snap
        if snap.done:
            return


def run_to_end(task: Task, config: RunConfig, cancel: Callable[[], bool] | None = None) -> list[Snapshot]:
    """All snapshots of a run, as a list."""
    return list(run(task, config, cancel))
