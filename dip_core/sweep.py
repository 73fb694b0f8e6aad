"""Sweeps of λ × σ × image × seed: one run per spec, sequential or as Ray tasks, resumable.

Each finished run appends one row to ``DIR/results.jsonl``; runs whose key is already there are
skipped, so a crashed or cancelled sweep restarts where it stopped. Ray is optional: without it (or
with ``use_ray=False``) the same specs run one after another in this process.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .autotune import resolve
from .baselines import baseline
from .config import PRESETS, RunConfig, preset
from .curves import run_stats
from .engine import run
from .errors import InputError
from .io import load_image, resize_mask, resize_max_side
from .replay import FrameWriter, frame_every, write_images
from .stopping import task_noise_energy
from .tasks import make_task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class RunSpec:
    """Everything one run needs, as plain data (sent to Ray workers as is)."""

    task: str
    image: str  # path to a clean image
    lipschitz: float
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


def variant_name(lipschitz: float, upsample: str, gaussian_sigma: float | None) -> str:
    """``vanilla`` for λ = 0 with bilinear upsampling, else e.g. ``lam1.4`` or ``lam1.4_gauss0.5``."""
    if lipschitz == 0 and upsample == "bilinear":
        return "vanilla"
    name = f"lam{lipschitz:g}"
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
    lipschitz: Iterable[float],
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
                            float(lam),
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


def run_spec(spec: RunSpec, curve_dir: str | None = None, threads: int | None = None) -> dict:
    """Execute one run to the end of its budget; returns its result row (and writes its curve if asked)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    img, _ = load_image(spec.image)
    if spec.max_side and max(img.shape[:2]) > spec.max_side:
        img = resize_max_side(img, spec.max_side)[0]
    mask = None
    if spec.mask:
        mask = load_image(spec.mask)[0]
        if mask.shape[:2] != img.shape[:2]:
            mask = resize_mask(mask, img.shape[:2])
    task = make_task(spec.task, img, spec.level, mask=mask, seed=spec.seed)
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
    """True when the optional ``ray`` package can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


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
    todo = [s for s in specs if s.key not in done_keys(results)]
    if results.is_file() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with open(results, "a") as f:
            f.write("\n")  # end a line torn by a crash, so the next row starts on its own line
    curve_dir = str(out) if curves else None
    written = []

    def record(row: dict) -> None:
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        written.append(row)
        if on_row:
            on_row(row)

    if not todo:
        return written
    if use_ray and ray_available():
        import ray

        if not ray.is_initialized():
            if ray_address:
                ray.init(address=ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(cpus_per_run, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(run_spec)
        pending = [remote.remote(s, curve_dir, cpus_per_run) for s in todo]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            record(ray.get(ready[0]))
    elif jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

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
