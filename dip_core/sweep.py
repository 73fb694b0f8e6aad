"""Sweeps of λ × σ × image × seed: one run per spec, sequential or as Ray tasks, resumable.

Each finished run appends one row to ``DIR/results.jsonl``; runs whose key is already there are
skipped, so a crashed or cancelled sweep restarts where it stopped. Ray is optional: without it (or
with ``use_ray=False``) the same specs run one after another in this process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import logging
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .autotune import preset, resolve
from .config import PRESETS, RunConfig
from .engine import run
from .errors import InputError, shown
from .io import load_image, resize_mask, resize_max_side
from .replay import FrameWriter, frame_every, write_images
from .stopping import task_noise_energy
from .summary import run_stats
from .tasks import Task, baseline, make_task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class RunSpec:
    """Everything one run needs, as plain data (sent to Ray workers as is)."""

    task: str
    image: str  # path to a clean image
    lipschitz: float | str  # a λ, or "auto": the task's rule (dip_core/bound.py)
    upsample: str  # bilinear | nearest | gaussian
    gaussian_sigma: float | None
    seed: int
    level: float | None = None
    max_side: int | None = None
    preset: str = "auto"
    overrides: dict = field(default_factory=dict)  # RunConfig fields (width, lr, iterations, every, device, ...)
    variant: str = ""  # the configuration's name in file names and tables
    mask: str | None = None  # inpainting: a mask image (white = known), resized to the image; else a random one
    frames: int = 0  # keep this many result frames and spectrum maps (a replay, dip_core/replay.py) in DIR/<key>/

    @property
    def key(self) -> str:
        """Unique and stable: image stem, variant and seed."""
        return f"{Path(self.image).stem}__{self.variant}__s{self.seed}"


def variant_name(lipschitz: float | str, upsample: str, gaussian_sigma: float | None) -> str:
    """``vanilla`` for λ = 0 with bilinear upsampling, else e.g. ``lam1.4``, ``lam1.4_gauss0.5`` or ``lamauto``."""
    if lipschitz == 0 and upsample == "bilinear":
        return "vanilla"
    name = f"lam{lipschitz}" if isinstance(lipschitz, str) else f"lam{lipschitz:g}"
    if upsample == "gaussian":
        name += f"_gauss{gaussian_sigma:g}" if gaussian_sigma is not None else "_gauss"
    elif upsample != "bilinear":
        name += f"_{upsample}"
    return name


def image_files(spec: str) -> list[Path]:
    """One image file, or every image in a folder (sorted)."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{spec}: no images in this folder")
        return files
    if not path.is_file():
        raise InputError(f"{spec}: no such file or folder")
    return [path]


def grid(
    task: str,
    images: str,
    lipschitz: Iterable[float | str],
    gaussian_sigmas: Iterable[float | None],
    seeds: int,
    **common,
) -> list[RunSpec]:
    """The product images × λ × σ × seeds; a σ of None means bilinear upsampling."""
    specs = []
    for image in image_files(images):
        for lam in lipschitz:
            for sigma in gaussian_sigmas:
                up = "bilinear" if sigma is None else "gaussian"
                for seed in range(seeds):
                    specs.append(
                        RunSpec(
                            task,
                            str(image),
                            lam if isinstance(lam, str) else float(lam),
                            up,
                            sigma,
                            seed,
                            variant=variant_name(lam, up, sigma),
                            **common,
                        )
                    )
    return specs


def config_of(spec: RunSpec) -> RunConfig:
    """The RunConfig of a spec: its preset, its overrides, then its λ, upsampling, σ and seed."""
    return preset(
        spec.preset,
        **{
            "measure_every_step": True,  # per-step ratios and losses: any stopping rule can be evaluated afterwards
            **spec.overrides,
            "lipschitz": spec.lipschitz,
            "upsample": spec.upsample,
            "gaussian_sigma": spec.gaussian_sigma,
            "seed": spec.seed,
        },
    )


def task_of(spec: RunSpec) -> Task:
    """The task a spec runs: its image brought within ``max_side``, its mask to the image's size, its seed's noise."""
    img, _ = load_image(spec.image)
    if spec.max_side and max(img.shape[:2]) > spec.max_side:
        img = resize_max_side(img, spec.max_side)[0]
    mask = None
    if spec.mask:
        mask = load_image(spec.mask)[0]
        if mask.shape[:2] != img.shape[:2]:
            mask = resize_mask(mask, img.shape[:2])
    return make_task(spec.task, img, spec.level, mask=mask, seed=spec.seed)


def run_spec(spec: RunSpec, curve_dir: str | None = None, threads: int | None = None) -> dict:
    """Execute one run to the end of its budget; returns its result row (and writes its curve if asked)."""
    if threads:
        torch.set_num_threads(threads)
    task = task_of(spec)
    config = resolve(task, config_of(spec))  # the device and convolution path, chosen once for this machine
    frames = None
    if spec.frames and curve_dir:
        frames = FrameWriter(
            task, Path(curve_dir) / spec.key, frame_every(config.iterations, config.every, spec.frames)
        )
        write_images(task, Path(curve_dir) / spec.key)
    records = []
    # the discrepancy rule's threshold (denoising only), kept in the curve so a report can evaluate it later
    energy = task_noise_energy(task) if task.noise_sigma is not None else None
    log = open(Path(curve_dir) / f"{spec.key}.jsonl", "w") if curve_dir else None
    try:
        for snap in run(task, config):
            if records and snap.iter == records[-1]["iter"]:  # a non-finite loss: the last good snapshot again
                continue
            rec = snap.record()
            if not records and energy is not None:
                rec["noise_energy"] = energy
            rec["step_ratios"] = snap.step_ratios
            rec["step_losses"] = snap.step_losses
            records.append(rec)
            if frames:
                frames.add(snap)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
    finally:
        if log:
            log.close()
    if frames:
        frames.close()
    stats = run_stats(records, config.iterations)
    row = {"key": spec.key, "spec": asdict(spec), "iterations": records[-1]["iter"], "seconds": records[-1]["seconds"]}
    row["device"] = config.device
    row["lipschitz"], row["bound"] = config.lipschitz, config.bound  # what ran: auto's λ and bound, resolved
    row["final_psnr"] = stats.pop("final_psnr")
    classical = baseline(task)  # the task's OpenCV baseline on the same observation
    row["baseline_method"], row["baseline_psnr"] = classical.method, classical.psnr
    row.update(stats)  # best PSNR and its step, then the stop step and snapshot PSNR of each rule
    return row


def done_keys(results: Path) -> set[str]:
    """Keys of the rows already in results.jsonl (a torn last line from a crash is ignored)."""
    keys = set()
    if results.is_file():
        for line in results.read_text().splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                continue
    return keys


def ray_available() -> bool:
    """True when the optional ``ray`` package is installed (found, not imported: see ``connect_ray``)."""
    return importlib.util.find_spec("ray") is not None


#: How long a driver tries a head that does not answer or refuses it (Ray's defaults: 20 s to minutes of retries):
#: seconds for a refused token, about 25 s for a port where something else listens. Read when Ray is imported or
#: connects; a value the user set in the environment wins.
RAY_CONNECT_LIMITS = {
    "RAY_gcs_server_port_wait_time_s": "2",  # attempts, about a second apart
    "RAY_gcs_rpc_server_connect_timeout_s": "3",  # each attempt's wait for a connection
    "RAY_py_gcs_connect_timeout_s": "5",  # and for the head's answer (not a limit once connected)
}
#: A run whose worker process dies (killed, out of memory, a lost node) starts again on another worker, this many times.
RAY_TASK_RETRIES = 3
TOKEN_HELP = "`ray get-auth-token` on the head prints it"


def split_address(address: str) -> tuple[str, int]:
    """HOST and PORT of a Ray address: ``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST:PORT``."""
    host, sep, port = address.strip().removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"the Ray address {shown(address)} is not HOST:PORT (the head's address, e.g. 127.0.0.1:6379)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def stderr_to_file() -> Iterator[list[str]]:
    """Inside the block, file descriptor 2 (Ray's C++ logs too) writes to a temporary file; its text after the block."""
    text: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text.append(log.read().decode(errors="replace"))


def first_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def token_source() -> str:
    """Where Ray takes this process's token from: RAY_AUTH_TOKEN, else RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    return "RAY_AUTH_TOKEN_PATH" if os.environ.get("RAY_AUTH_TOKEN_PATH") else "~/.ray/auth_token"


def connect_error(address: str, err: BaseException, log: str, start: str) -> str:
    """One line for a failed ``ray.init(address=...)``: a token missing or refused, else a head that did not answer
    (``start``: the command that starts one)."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    text = "\n".join(f"{type(e).__name__}: {e}" for e in chain) + "\n" + log
    where = "put the cluster's token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
    if "no authentication token was found" in text or "cannot be opened or is empty" in text:
        found = "RAY_AUTH_TOKEN_PATH names no readable token file" if "cannot be opened" in text else "no token here"
        return f"RAY_AUTH_MODE=token but {found}: {where} ({TOKEN_HELP})"
    if any(k in text for k in ("InvalidAuthToken", "AuthenticationError", "Unauthenticated")):
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            return f"the Ray cluster at {address} requires a token: set RAY_AUTH_MODE=token and {where} ({TOKEN_HELP})"
        return (
            f"the Ray cluster at {address} refused this driver's token (from {token_source()}): "
            f"give it the cluster's token ({TOKEN_HELP})"
        )
    if "Version mismatch" in text:  # Ray refuses a driver whose Ray or Python version differs from the cluster's
        here = f"Ray {getattr(sys.modules.get('ray'), '__version__', '?')}, Python {sys.version.split()[0]}"
        return f"the Ray cluster at {address} runs another Ray or Python than this driver ({here}): install the same"
    why = "no Ray head answered there"
    return f"cannot reach the Ray cluster at {address}: {why} (start it with {start}, or check the address)"


def connect_ray(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` (``HOST:PORT`` or ``auto``) in seconds, or raise one
    InputError line: the head unreachable, not a Ray head, or this driver's token missing or refused."""
    start = "`ray start --head`"
    if address != "auto":
        host, port = split_address(address)
        start = f"`ray start --head --port {port}`"
        if is_loopback(host):  # else Ray swaps a loopback address for this machine's outward one (read at import)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as err:
            why = err.strerror or str(err) or type(err).__name__
            raise InputError(
                f"cannot reach the Ray cluster at {address}: {why} (start it with {start}, or check the address)"
            ) from None
    for name, value in RAY_CONNECT_LIMITS.items():
        os.environ.setdefault(name, value)
    import ray  # optional (requirements-sweep.txt), and imported after its connection limits are set above

    failure = None
    with stderr_to_file() as log:  # Ray's retries log a screenful to stderr: the line below says it all
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, AuthenticationError, ...
            failure = err
    if failure is not None:
        raise InputError(connect_error(address, failure, log[0], start)) from None
    sys.stderr.write(log[0])  # connected: Ray's warnings, if any, as Ray wrote them


def run_failure(key: str, err: BaseException) -> str:
    """A run lost on Ray, in a few words: the exception's type and first line, with the next step when known."""
    cause = getattr(err, "cause", None) or err
    what = f"{type(cause).__name__}: {first_line(str(cause), 120)}"
    if isinstance(cause, ModuleNotFoundError) or "No module named" in what:
        what += " (every node needs this repository: pip install . in the Python that runs Ray)"
    return f"{key}: {what}"


def execute(
    specs: list[RunSpec],
    out: str | os.PathLike,
    *,
    use_ray: bool = True,
    ray_address: str | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0,
    curves: bool = True,
    jobs: int = 1,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every spec whose row is missing from ``out/results.jsonl``, appending rows as runs finish.

    Returns the rows written in this call. Ray tasks when ``use_ray`` and Ray is installed (a local
    instance unless ``ray_address`` names a cluster); otherwise ``jobs`` local processes (``cpus_per_run``
    threads each), or sequential in this process when ``jobs`` is 1.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    seen = done_keys(results)  # the keys in results.jsonl: each is written once
    todo = [s for s in specs if s.key not in seen]
    if results.is_file() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with open(results, "a") as f:
            f.write("\n")  # end a line torn by a crash, so the next row starts on its own line
    curve_dir = str(out) if curves else None
    written = []

    def record(row: dict) -> None:
        if row["key"] in seen:  # never twice, whatever ran a run twice (a retry, another sweep into DIR)
            return
        seen.add(row["key"])
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        written.append(row)
        if on_row:
            on_row(row)

    if not todo:
        return written
    if use_ray and ray_address and not ray_available():
        raise InputError(f"--ray-address {ray_address} needs Ray here too: pip install -r requirements-sweep.txt")
    if use_ray and ray_available():
        import ray  # optional (requirements-sweep.txt): a sweep without it runs here or in local processes

        if not ray.is_initialized():
            if ray_address:
                connect_ray(ray_address)
            else:
                ray.init(num_cpus=max(cpus_per_run, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=RAY_TASK_RETRIES)(run_spec)
        keys = {remote.remote(s, curve_dir, cpus_per_run): s.key for s in todo}
        pending, lost = list(keys), []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                row = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # lost beyond its retries, or it raised: the others go on
                lost.append(run_failure(keys[ready[0]], err))
                continue
            record(row)
        if lost:
            raise InputError(
                f"{len(lost)} of {len(todo)} runs failed on Ray ({lost[0]}); the other rows are in {results}: "
                "rerun the same command to run only the missing ones"
            )
    elif jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in as_completed([pool.submit(run_spec, s, curve_dir, cpus_per_run) for s in todo]):
                record(done.result())
    else:
        for s in todo:
            record(run_spec(s, curve_dir, None))
    return written


def load_rows(out: str | os.PathLike) -> list[dict]:
    """Every complete row of ``out/results.jsonl``."""
    rows = []
    path = Path(out) / "results.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def spread(iters: list[int | None]) -> str:
    """Iterations over seeds: "120" when they agree, "110–130" (lowest–highest) when not, "—" when none."""
    known = [t for t in iters if t is not None]
    if not known:
        return "—"
    lo, hi = min(known), max(known)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def summary_table(rows: list[dict], stop_rule: str = "paper") -> str:
    """Markdown: per image, the best configuration by final PSNR, by peak PSNR and by PSNR at ``stop_rule``'s stop;
    then per configuration its PSNRs averaged over seeds beside the iterations over seeds (lowest–highest).

    In the first table, where the stopping rule never fired, a run's PSNR at the stop is its final PSNR (it ran to the
    end of its budget); the second gives the stop's iterations and mean PSNR over the seeds where it fired.
    """
    by_image: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        by_image.setdefault(Path(r["spec"]["image"]).stem, {}).setdefault(r["spec"]["variant"], []).append(r)

    def mean(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return sum(vals) / len(vals) if vals else None

    def best(cfgs: dict[str, float | None]) -> str:
        scored = {k: v for k, v in cfgs.items() if v is not None}
        if not scored:
            return "—"
        k = max(scored, key=scored.get)
        return f"{k} ({scored[k]:.2f} dB)"

    lines = [
        "| image | OpenCV baseline | best by final PSNR | best by peak PSNR | "
        f"best by PSNR at the {stop_rule} stop | runs |",
        "|---|---|---|---|---|---|",
    ]
    for image, cfgs in sorted(by_image.items()):
        base = mean([r.get("baseline_psnr") for v in cfgs.values() for r in v])  # rows from before have none
        base_cell = "—" if base is None else f"{base:.2f} dB"
        final = {k: mean([r["final_psnr"] for r in v]) for k, v in cfgs.items()}
        peak = {k: mean([r["best_psnr"] for r in v]) for k, v in cfgs.items()}
        at_stop = {
            k: mean([r[f"stop_{stop_rule}_psnr"] if r[f"stop_{stop_rule}_iter"] else r["final_psnr"] for r in v])
            for k, v in cfgs.items()
        }
        n = sum(len(v) for v in cfgs.values())
        lines.append(f"| {image} | {base_cell} | {best(final)} | {best(peak)} | {best(at_stop)} | {n} |")
    lines += [
        "",
        f"| image | config | seeds | final PSNR | peak PSNR (iter) | {stop_rule} stop (iter / PSNR) | seconds |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
    for image, cfgs in sorted(by_image.items()):
        for k, v in sorted(cfgs.items()):
            fired = [r for r in v if r[f"stop_{stop_rule}_iter"]]
            stop = (
                "—"
                if not fired
                else (
                    f"{spread([r[f'stop_{stop_rule}_iter'] for r in fired])} / "
                    f"{fmt(mean([r[f'stop_{stop_rule}_psnr'] for r in fired]))}"
                )
            )
            if fired and len(fired) < len(v):
                stop += f" ({len(fired)} of {len(v)} seeds)"
            lines.append(
                f"| {image} | {k} | {len(v)} | {fmt(mean([r['final_psnr'] for r in v]))} | "
                f"{fmt(mean([r['best_psnr'] for r in v]))} ({spread([r['best_iter'] for r in v])}) | {stop} | "
                f"{mean([r['seconds'] for r in v]):.0f} |"
            )
    return "\n".join(lines) + "\n"


def sweep(specs: list[RunSpec], out: str | os.PathLike, *, stop_rule: str = "paper", **kw) -> tuple[str, float]:
    """Execute, then write ``out/summary.md``; returns the summary and the wall time in seconds."""
    start = time.perf_counter()
    execute(specs, out, **kw)
    wall = time.perf_counter() - start
    table = summary_table(load_rows(out), stop_rule)
    Path(out, "summary.md").write_text(f"# Sweep summary\n\n{table}")
    return table, wall


__all__ = ["PRESETS", "RunSpec", "execute", "grid", "load_rows", "run_spec", "summary_table", "sweep"]
