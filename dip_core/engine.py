"""The one run loop for every task: fit the decoder to A f(z) ≈ y and stream snapshots."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch

from . import autotune, metrics
from .errors import InputError
from .layers import CONV_ALGOS, POWER_WARMUP_STEPS, LipschitzConv2d
from .nets import UPSAMPLE_MODES, Decoder, fourier_input
from .stopping import STOP_RULES, DiscrepancyStop, RatioWindowStop, stop_for
from .tasks import Task, to_image

#: The λ the paper uses per task for the controlled network (SR: not stated; 1.4 as for denoising).
PAPER_LIPSCHITZ = {"denoise": 1.4, "jpeg": 1.4, "inpaint": 1.6, "sr": 1.4, "enhance": 1.0}
#: Backtracking restores the last saved weights when the loss grows by more than this factor (5 dB).
BACKTRACK_FACTOR = 10**0.5
MAX_ITERATIONS = 100_000


@dataclass
class RunConfig:
    """Everything that defines a run besides the task. Defaults are the paper's settings (method.md)."""

    iterations: int = 10_000
    every: int = 50  # a snapshot every this many steps
    seed: int = 0
    lr: float = 1e-3
    width: int = 128
    depth: int = 5
    upsample: str = "bilinear"  # bilinear | nearest | gaussian
    lipschitz: float | Sequence[float] = 0.0  # λ; 0 = vanilla DIP
    gaussian_sigma: float | Sequence[float] | None = None  # None = the code's per-stage σ
    padding: str = "reflect"  # reflect | zeros
    sn_method: str = "svd"  # svd | power
    power_iters: int = 2
    precision: str = "fp32"  # fp32 | bf16 (autocast of the forward pass)
    channels_last: bool = False
    auto_stop: str = "off"  # off | paper | relative (ours) | discrepancy (ours, denoising)
    reg_noise_std: float = 0.0  # original DIP trick: z + N(0, std²) each step
    ema: float = 0.0  # original DIP trick: exponential moving average of outputs (0 = off)
    backtrack: bool = False  # original DIP trick: restore a copy of the weights when the loss jumps
    device: str = "auto"  # auto | cpu | cuda
    measure_every_step: bool = False  # compute FBC/blur/sharpness each step (benchmarks, faithful cost)
    conv_algo: str = "direct"  # direct | winograd (3×3 convs by NNPACK on CPU) | auto (the faster of direct,
    # winograd and direct with channels_last, timed on this CPU at first use: dip_core/autotune.py)
    cuda_graph: bool = False  # CUDA: replay the whole step as one captured graph (eager fallback)

    def validate(self) -> RunConfig:
        """Raise ``InputError`` (one line) for any out-of-range setting; returns self."""

        def num(name: str, lo: float, hi: float, integer: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise InputError(f"{name} must be a number between {lo:g} and {hi:g}, got {v!r}")
            if integer and v != int(v):
                raise InputError(f"{name} must be a whole number, got {v!r}")

        num("iterations", 1, MAX_ITERATIONS, True)
        num("every", 1, MAX_ITERATIONS, True)
        num("seed", 0, 2**32 - 1, True)
        num("lr", 1e-6, 1.0)
        num("width", 4, 512, True)
        num("depth", 1, 7, True)
        num("power_iters", 1, 100, True)
        num("reg_noise_std", 0, 1)
        num("ema", 0, 0.9999)
        for name, value, hi in (("lipschitz", self.lipschitz, 100.0), ("gaussian_sigma", self.gaussian_sigma, 10.0)):
            values = [] if value is None else [value] if isinstance(value, (int, float)) else list(value)
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= hi:
                    raise InputError(f"{name} must be between 0 and {hi:g}, got {v!r}")
        for name, allowed in (
            ("upsample", UPSAMPLE_MODES),
            ("padding", ("reflect", "zeros")),
            ("sn_method", ("svd", "power")),
            ("precision", ("fp32", "bf16")),
            ("conv_algo", ("auto", *CONV_ALGOS)),
            ("auto_stop", STOP_RULES),
            ("device", ("auto", "cpu", "cuda")),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict:
        """A JSON-ready dict (re-loadable with ``RunConfig.from_dict``)."""
        d = asdict(self)
        for k in ("lipschitz", "gaussian_sigma"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Build from a dict, ignoring unknown keys; validated."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}).validate()


#: Named starting points. ``paper``: the authors' configuration. ``cpu``/``cuda``: fast presets whose
#: shortcuts were checked against the paper's curves (benchmarks/RESULTS.md).
PRESETS: dict[str, dict] = {
    "paper": dict(width=128, padding="reflect", sn_method="svd", precision="fp32", iterations=10_000, every=50),
    "cpu": dict(
        width=48,  # width and lr chosen by benchmarks.time_to_quality on 2 cores (benchmarks/RESULTS.md)
        lr=0.003,
        padding="zeros",
        sn_method="power",
        conv_algo="auto",  # Winograd won on an AMD EPYC, oneDNN's direct conv on an Intel Xeon: timed per machine
        precision="fp32",
        channels_last=False,  # (auto sets it when it picks direct+channels_last)
        iterations=1500,
        every=10,
    ),
    "cuda": dict(
        width=128,
        padding="reflect",
        sn_method="power",
        precision="fp32",
        channels_last=False,
        cuda_graph=True,  # checked on an H100: same curve as eager, 2.8× faster at 256² (benchmarks/RESULTS.md)
        iterations=10_000,
        every=50,
    ),
}


def preset(name: str = "auto", **overrides) -> RunConfig:
    """A RunConfig from a named preset (``auto``: ``cuda`` when a GPU is present, else ``cpu``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of auto, {', '.join(PRESETS)}")
    return replace(RunConfig(), **{**PRESETS[name], **overrides}).validate()


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available else CPU; asking for CUDA without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA GPU is available")
    return torch.device(name)


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
    stopped: bool = False  # the automatic stop fired
    stop_iter: int | None = None
    done: bool = False  # the last snapshot of the run
    message: str | None = None  # why the run ended early (non-finite loss), if it did
    best_psnr: float | None = None
    best_iter: int | None = None
    step_psnrs: list[tuple[int, float]] = field(default_factory=list)  # (t, PSNR_t) likewise, with
    # ``measure_every_step`` and a known clean image
    step_ratios: list[tuple[int, float]] = field(default_factory=list)  # (t, r_t) of every step since
    # the previous snapshot, when the ratio is measured each step (a ratio auto-stop or measure_every_step)
    step_losses: list[tuple[int, float]] = field(default_factory=list)  # (t, loss_t) likewise (the
    # discrepancy auto-stop or measure_every_step)

    def record(self) -> dict:
        """The JSON-ready log line (no image)."""
        keys = ("iter", "loss", "psnr", "ssim", "fbc", "fbc_clean", "ratio", "seconds")
        return {k: getattr(self, k) for k in keys}


@dataclass
class RunState:
    """What the loop keeps between snapshots (exposed for tests and benchmarks)."""

    net: Decoder
    z: torch.Tensor
    crop: tuple[int, int, int, int]
    optimizer: torch.optim.Optimizer
    device: torch.device
    ratios: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (t, r_t) not yet fetched
    psnrs: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (t, PSNR_t) not yet fetched
    losses: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (t, loss_t) not yet fetched


def build(task: Task, config: RunConfig) -> RunState:
    """Seed, build the decoder and its input for ``task`` on the configured device."""
    config = autotune.resolve(task, config.validate())
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
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
    )
    m = net.multiple
    h, w = task.out_size
    # at least a 2×2 input grid: reflection padding needs more than one pixel at the coarsest level
    hp, wp = max(2, math.ceil(h / m)) * m, max(2, math.ceil(w / m)) * m
    crop = ((hp - h) // 2, (wp - w) // 2, h, w)
    z = fourier_input(hp // m, wp // m, net.in_channels, torch.Generator().manual_seed(config.seed))
    net, z = net.to(device), z.to(device)
    if config.channels_last:
        net, z = net.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    task.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest conv algorithms
    for conv in net.modules():
        if isinstance(conv, LipschitzConv2d):
            conv.conv_algo = config.conv_algo
    graphed = config.cuda_graph and device.type == "cuda"
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, capturable=graphed)
    return RunState(net, z, crop, optimizer, device)


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
    if not config.cuda_graph or config.reg_noise_std > 0 or config.backtrack:
        return None  # fresh noise each step, or a host sync each step
    lams = [config.lipschitz] if isinstance(config.lipschitz, (int, float)) else config.lipschitz
    if not any(lam > 0 for lam in lams):
        return 4
    # an exact SVD checks its result on the host: not capturable
    return POWER_WARMUP_STEPS + 1 if config.sn_method == "power" else None


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


def run(
    task: Task,
    config: RunConfig,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Snapshot]:
    """Fit the decoder to ``task``; yield a Snapshot every ``config.every`` steps and a final one.

    The caller may stop the run by closing the generator, or between steps with ``stop()`` returning
    True (the final snapshot then holds the image reached). No host sync happens between snapshots
    unless backtracking is on.
    """
    config = autotune.resolve(task, config.validate())  # conv_algo="auto": the path chosen for this machine
    stopper = stop_for(config.auto_stop, config.iterations, task)
    by_ratio, by_loss = isinstance(stopper, RatioWindowStop), isinstance(stopper, DiscrepancyStop)
    state = build(task, config)
    net, device = state.net, state.device
    ref_dtype = torch.float64 if device.type == "cpu" else torch.float32
    fbc_obs = metrics.FrequencyBandMeter(task.observation[0].to(ref_dtype))
    fbc_clean = metrics.FrequencyBandMeter(task.clean[0].to(ref_dtype)) if task.clean is not None else None
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1) if config.reg_noise_std > 0 else None
    average: torch.Tensor | None = None
    saved: list[torch.Tensor] | None = None
    last_loss = math.inf
    best_psnr, best_iter = -math.inf, None
    last_good: Snapshot | None = None
    step_ratios: list[tuple[int, float]] = []
    step_psnrs: list[tuple[int, float]] = []
    step_losses: list[tuple[int, float]] = []
    start = time.perf_counter()

    def ratio_of(result: torch.Tensor) -> torch.Tensor:
        return metrics.ratio_t(metrics.grayscale_t(result[0].to(ref_dtype)))

    def in_observation_space(x: torch.Tensor) -> torch.Tensor:
        """A x (masked for inpainting): what FBC compares with the observation y."""
        observed = task.operator(x)
        return observed * task.mask if task.mask is not None else observed

    def measure(t: int, out: torch.Tensor, loss: torch.Tensor) -> Snapshot:
        nonlocal best_psnr, best_iter
        with torch.no_grad():
            shown = average if average is not None else out
            result = task.finish(shown)
            observed = in_observation_space(shown)
            scalars = [loss.detach().float(), ratio_of(result).float()]
            vectors = [fbc_obs(observed[0].to(ref_dtype)).float()]
            if task.clean is not None:
                scalars += [
                    metrics.psnr_t(result, task.clean).float(),
                    metrics.ssim_t(result[0], task.clean[0]).float(),
                ]
                vectors.append(fbc_clean(result[0].to(ref_dtype)).float())
            host = torch.cat([torch.stack(scalars), *vectors]).cpu().tolist()  # the one sync per snapshot
            image = to_image(result)
        loss_v, ratio_v = host[0], host[1]
        psnr_v = ssim_v = fbc_c = None
        fbc_o = host[len(scalars) : len(scalars) + 5]
        if task.clean is not None:
            psnr_v, ssim_v = host[2], host[3]
            fbc_c = host[len(scalars) + 5 :]
            if psnr_v > best_psnr:
                best_psnr, best_iter = psnr_v, t
        return Snapshot(
            iter=t,
            image=image,
            loss=loss_v,
            fbc=fbc_o,
            fbc_clean=fbc_c,
            psnr=psnr_v,
            ssim=ssim_v,
            ratio=ratio_v,
            seconds=time.perf_counter() - start,
            best_psnr=None if best_iter is None else best_psnr,
            best_iter=best_iter,
        )

    capture_at = graph_start(config) if device.type == "cuda" else None
    graph: GraphStep | None = None
    for t in range(1, config.iterations + 1):
        if graph is None and t == capture_at:
            # drop the last eager step's autograd graph: its AccumulateGrad nodes live on the default stream and
            # would invalidate a capture on the side stream
            out = loss = None
            try:
                graph = GraphStep(state, config, task)
            except Exception as err:  # any capture failure: stay eager (same results, slower)
                warnings.warn(f"CUDA graph capture failed, running eagerly: {err}", RuntimeWarning, stacklevel=2)
                capture_at = None
                torch.cuda.synchronize(device)
            else:
                out, loss = graph.out, graph.loss
        elif graph is not None:
            out, loss = graph.step()
        if graph is None:
            state.optimizer.zero_grad(set_to_none=True)
            z = state.z
            if noise_gen is not None:
                z = z + config.reg_noise_std * torch.randn(z.shape, generator=noise_gen, device=device).to(
                    memory_format=torch.channels_last if config.channels_last else torch.contiguous_format
                )
            out = forward(state, config, z)
            loss = task.loss(out)
            loss.backward()
        restored = False
        if config.backtrack:
            value = loss.item()
            if saved is not None and value > BACKTRACK_FACTOR * last_loss:
                with torch.no_grad():
                    for p, s in zip(net.parameters(), saved):
                        p.copy_(s)
                if t < config.iterations:
                    continue
                # a jump on the last step: the run still ends with a snapshot, of the restored weights
                restored = True
                with torch.no_grad():
                    out = forward(state, config, state.z)
                    loss = task.loss(out)
            else:
                last_loss = value
        if graph is None and not restored:
            state.optimizer.step()
        out = out.detach()
        if config.ema > 0:
            average = out.clone() if average is None else average.mul_(config.ema).add_(out, alpha=1 - config.ema)
        if by_loss or config.measure_every_step:
            state.losses.append((t, loss.detach().clone()))  # a copy: a CUDA graph reuses its loss tensor
        if by_ratio or config.measure_every_step:
            with torch.no_grad():
                result = task.finish(average if average is not None else out)
                state.ratios.append((t, ratio_of(result)))
                if config.measure_every_step:
                    fbc_obs(in_observation_space(out)[0].to(ref_dtype))
                    if task.clean is not None:
                        state.psnrs.append((t, metrics.psnr_t(result, task.clean)))
        fired = None
        user_stop = stop is not None and stop()
        last = t == config.iterations
        due = t % config.every == 0 or t == 1 or last or user_stop
        if state.psnrs and (due or len(state.psnrs) >= 256):
            values = torch.stack([v for _, v in state.psnrs]).cpu().tolist()
            step_psnrs += zip([i for i, _ in state.psnrs], values)
            state.psnrs.clear()
        if state.ratios and (due or len(state.ratios) >= 256):
            values = torch.stack([r for _, r in state.ratios]).cpu().tolist()  # one batched fetch
            steps = [i for i, _ in state.ratios]
            state.ratios.clear()
            for i, r in zip(steps, values):
                step_ratios.append((i, r))
                if by_ratio and fired is None and stopper.update(i, r):
                    fired = i
        if state.losses and (due or len(state.losses) >= 256):
            values = torch.stack([v for _, v in state.losses]).float().cpu().tolist()
            steps = [i for i, _ in state.losses]
            state.losses.clear()
            for i, v in zip(steps, values):
                step_losses.append((i, v))
                if by_loss and fired is None and stopper.update(i, v):
                    fired = i
        if due or fired:
            snap = measure(t, out, loss)
            if not math.isfinite(snap.loss) or not np.isfinite(snap.image).all():
                # a new snapshot: the last good one was already yielded (and its per-step values delivered)
                final = replace(last_good or snap, done=True, step_ratios=[], step_psnrs=[], step_losses=[],
                                message=f"stopped at iteration {t}: the loss became non-finite")  # fmt: skip
                yield final
                return
            if config.backtrack:
                saved = [p.detach().clone() for p in net.parameters()]
            last_good = snap
            snap.step_ratios, step_ratios = step_ratios, []
            snap.step_psnrs, step_psnrs = step_psnrs, []
            snap.step_losses, step_losses = step_losses, []
            if fired is not None:
                snap.stopped, snap.stop_iter, snap.done = True, fired, True
            snap.done = snap.done or last or user_stop
            yield snap
            if snap.done:
                return


def run_to_end(task: Task, config: RunConfig, stop: Callable[[], bool] | None = None) -> list[Snapshot]:
    """All snapshots of a run, as a list."""
    return list(run(task, config, stop))


def summarise(task: Task, config: RunConfig, snapshots: list[Snapshot], device: str) -> dict:
    """The run's summary (CLI ``summary.json``): stop, best and final PSNR, time, device."""
    final = snapshots[-1]
    scored = [s for s in snapshots if s.psnr is not None]
    best = max(scored, key=lambda s: s.psnr) if scored else None
    return {
        "task": task.name,
        "level": task.level,
        "config": config.to_dict(),
        "iterations": final.iter,
        "stopped_early": final.stopped,
        "stop_iter": final.stop_iter,
        "best_psnr": None if best is None else best.psnr,
        "best_iter": None if best is None else best.iter,
        "final_psnr": final.psnr,
        "seconds": final.seconds,
        "device": device,
        "conv_path": autotune.describe(autotune.resolve(task, config)),
        "message": final.message,
    }
