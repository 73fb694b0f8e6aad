"""Command line: ``python -m dip_core run ...`` writes observed/result/baseline PNGs, metrics.jsonl, summary.json."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from . import sweep
from .autotune import preset, preset_name, resolve
from .config import PRESET_NAMES, PRESETS, RunConfig, choices, preset_control
from .engine import run
from .errors import InputError
from .io import load_image, save_png
from .stopping import stop_for
from .summary import summarise
from .tasks import TASKS, Task, baseline, make_task, observed_task, to_image


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def setting(name: str):
    """An argparse ``type`` that checks a value against RunConfig's field ``name`` (its range, one line)."""

    def parse(text: str):
        try:
            return RunConfig.check(name, text)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name
    return parse


def sigma_or_none(text: str) -> float | None:
    """A sweep's σ: 'none' (or 'bilinear') for bilinear upsampling, else a checked Gaussian σ."""
    if text.lower() in ("none", "bilinear"):
        return None
    return setting("gaussian_sigma")(text)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = OneLineParser(prog="python -m dip_core", description="Deep Image Prior with spectral-bias control")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_run_parser(sub)
    add_sweep_parser(sub)
    return p


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    """The ``run`` subcommand's arguments."""
    r = sub.add_parser("run", help="fit one image and write the result, the metrics and a summary")
    r.add_argument("--task", required=True, choices=TASKS)
    r.add_argument("--image", required=True, help="clean image (or the degraded one with --observed)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--level", type=float, help="σ (0-255), JPEG quality, keep ratio, SR factor or gain")
    r.add_argument("--mask", help="inpainting mask image, white = known pixel")
    r.add_argument("--observed", action="store_true", help="the image is already degraded (no PSNR)")
    r.add_argument(
        "--preset", default="auto", choices=PRESET_NAMES, help="auto (cuda on a GPU, else cpu), cpu, cuda, paper"
    )
    control = r.add_mutually_exclusive_group()
    control.add_argument(
        "--lipschitz",
        type=setting("lipschitz"),
        help=f"λ bound of the controlled network (0 = vanilla DIP; auto: the task's rule, or its best fixed λ, "
        f"said in a note: dip_core/bound.py). Default: the controlled network, "
        f"with the paper's λ for the task on the paper/cuda presets; on the cpu preset auto for "
        f"{' and '.join(n for n, s in TASKS.items() if s.auto.met)} (their rules met the bar at that scale), "
        f"else {control_label(PRESETS['cpu'])} (chosen at that scale)",
    )
    control.add_argument("--controlled", action="store_true", help="the paper's λ for the task, on any preset")
    control.add_argument(
        "--vanilla", action="store_true", help="vanilla DIP: λ = 0 and bilinear upsampling (it decays)"
    )
    r.add_argument("--upsample", choices=choices("upsample"))
    r.add_argument("--gaussian-sigma", type=setting("gaussian_sigma"), help="σ of every Gaussian upsampling layer")
    r.add_argument("--width", type=setting("width"))
    r.add_argument("--lr", type=setting("lr"))
    r.add_argument("--iters", type=setting("iterations"))
    r.add_argument("--every", type=setting("every"))
    r.add_argument(
        "--auto-stop",
        nargs="?",
        const="paper",
        choices=choices("auto_stop"),
        help="off (the default); paper: the authors' rule; relative: ours for short budgets; "
        "discrepancy: ours, denoising (needs σ)",
    )
    r.add_argument("--seed", type=setting("seed"), default=0)
    r.add_argument("--max-side", type=int, default=None, help="downscale larger images to this side")
    r.add_argument("--device", default="auto", choices=choices("device"))
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """The ``sweep`` subcommand's arguments."""
    w = sub.add_parser("sweep", help="run a λ × σ × image × seed grid (Ray when installed), resumable")
    w.add_argument("--task", required=True, choices=TASKS)
    w.add_argument("--images", required=True, help="an image file or a folder of clean images")
    w.add_argument("--out", required=True, help="folder for results.jsonl, curves and summary.md")
    w.add_argument("--level", type=float)
    w.add_argument(
        "--lipschitz",
        type=setting("lipschitz"),
        nargs="+",
        default=None,
        help="λ values (0 = vanilla DIP; auto: the task's rule); default: the preset's controlled network's",
    )
    w.add_argument(
        "--gaussian-sigma",
        type=sigma_or_none,
        nargs="+",
        default=None,
        help="σ values for Gaussian upsampling, 'none' = bilinear; default: the preset's",
    )
    w.add_argument("--seeds", type=int, default=1)
    w.add_argument("--preset", default="auto", choices=PRESET_NAMES)
    w.add_argument("--width", type=setting("width"))
    w.add_argument("--lr", type=setting("lr"))
    w.add_argument("--iters", type=setting("iterations"))
    w.add_argument("--every", type=setting("every"))
    w.add_argument("--max-side", type=int, default=None)
    w.add_argument("--device", default="auto", choices=choices("device"))
    w.add_argument(
        "--ray-address",
        default=None,
        help="a Ray cluster's head, HOST:PORT (see docs/cli.md: token, workers); default: a local Ray instance",
    )
    w.add_argument("--no-ray", action="store_true", help="run in this process (or --jobs local processes)")
    w.add_argument(
        "--jobs", type=int, default=1, help="without Ray: runs at once, in local processes (one thread each)"
    )
    w.add_argument("--cpus-per-run", type=int, default=1)
    w.add_argument("--gpus-per-run", type=float, default=0)
    w.add_argument("--stop-rule", default="paper", choices=[r for r in choices("auto_stop") if r != "off"])


def task_from_args(args: argparse.Namespace) -> Task:
    """Read the image (and mask) and build the task."""
    image, notes = load_image(args.image, args.max_side)
    mask = load_image(args.mask)[0] if args.mask else None
    if args.observed:
        task = observed_task(args.task, image, args.level, mask=mask)
    else:
        task = make_task(args.task, image, args.level, mask=mask, seed=args.seed)
    task.notes += notes
    return task


def control_label(control: dict) -> str:
    """A preset's control in words: "λ = 1.8 with Gaussian upsampling (σ = 0.5)"."""
    up = control.get("upsample", "bilinear")
    text = f"λ = {control['lipschitz']:g}"
    if up == "gaussian":
        return text + f" with Gaussian upsampling (σ = {control['gaussian_sigma']:g})"
    return text + f" with {up} upsampling"


def control_of(args: argparse.Namespace) -> dict:
    """The run's λ (and upsampling): ``--vanilla``; ``--lipschitz``; ``--controlled``: the paper's λ for the task;
    else the one default rule for the task and preset (``config.preset_control``)."""
    if args.vanilla:
        return dict(lipschitz=0.0, upsample="bilinear", gaussian_sigma=None)
    if args.lipschitz is not None:  # a λ alone means bilinear upsampling (--upsample and --gaussian-sigma apply after)
        return dict(lipschitz=args.lipschitz, upsample="bilinear", gaussian_sigma=None)
    if args.controlled:
        return preset_control(args.task, "paper")
    return preset_control(args.task, preset_name(args.preset))


def cmd_run(args: argparse.Namespace) -> int:
    """Run one fit, streaming metrics to DIR/metrics.jsonl."""
    overrides = {
        k: v
        for k, v in dict(
            upsample=args.upsample,
            gaussian_sigma=args.gaussian_sigma,
            width=args.width,
            lr=args.lr,
            iterations=args.iters,
            every=args.every,
            auto_stop=args.auto_stop,
            seed=args.seed,
            device=args.device,
        ).items()
        if v is not None
    }
    config = preset(args.preset, **{**control_of(args), **overrides})
    task = task_from_args(args)
    config = resolve(task, config)  # the device and the convolution path, chosen once for this machine
    device = config.device
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create output folder {out}: {err.strerror}") from None
    stop_for(config.auto_stop, config.iterations, task)  # a stop this task cannot use: its one line, before any note
    for note in task.notes:
        print(f"note: {note}", file=sys.stderr)
    save_png(to_image(task.observation), out / "observed.png")
    classical = baseline(task)  # from the observation only; scored against the clean image when known
    if classical.image is None:
        print(f"note: {classical.unavailable}", file=sys.stderr)
    else:
        save_png(classical.image, out / "baseline.png")
    snapshots = []
    with (
        open(out / "metrics.jsonl", "w") as log,
        tqdm(total=config.iterations, file=sys.stderr, disable=args.quiet, unit="it", desc=args.task) as bar,
    ):
        for snap in run(task, config):
            final = snap
            if snapshots and snap.iter == snapshots[-1].iter:  # a non-finite loss: the last good one again, now done
                snapshots[-1] = replace(snap, image=None)
            else:
                snapshots.append(replace(snap, image=None))  # keep the scalars, not every image
                log.write(json.dumps(snap.record()) + "\n")
                log.flush()
            bar.update(snap.iter - bar.n)
            if snap.psnr is not None:
                bar.set_postfix(psnr=f"{snap.psnr:.2f}", best=f"{snap.best_psnr:.2f}")
            if snap.message:
                print(f"warning: {snap.message}", file=sys.stderr)
    save_png(final.image, out / "result.png")
    summary = summarise(task, config, snapshots, device)
    summary["baseline"] = classical.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the grid, appending to DIR/results.jsonl, then print and write DIR/summary.md."""
    control = preset_control(args.task, preset_name(args.preset))
    lams = args.lipschitz if args.lipschitz is not None else [control["lipschitz"]]
    sigmas = args.gaussian_sigma
    if sigmas is None:
        default = control["gaussian_sigma"] if control["upsample"] == "gaussian" else None
        sigmas = [default] if args.lipschitz is None else [None]
    overrides = {
        k: v
        for k, v in dict(
            width=args.width, lr=args.lr, iterations=args.iters, every=args.every, device=args.device
        ).items()
        if v is not None
    }
    specs = sweep.grid(
        args.task,
        args.images,
        lams,
        sigmas,
        args.seeds,
        level=args.level,
        max_side=args.max_side,
        preset=args.preset,
        overrides=overrides,
    )
    for spec in specs:
        sweep.config_of(spec)  # every spec's settings checked before the first run starts
    if args.ray_address and args.no_ray:
        raise InputError("--ray-address runs the sweep on a Ray cluster, --no-ray without Ray: give one of them")
    if args.ray_address and not sweep.ray_available():
        raise InputError(f"--ray-address {args.ray_address} needs Ray here too: pip install -r requirements-sweep.txt")
    use_ray = not args.no_ray and sweep.ray_available()
    if not args.no_ray and not use_ray:
        print(
            "note: ray is not installed (pip install -r requirements-sweep.txt): running sequentially", file=sys.stderr
        )
    done = len(sweep.done_keys(Path(args.out) / "results.jsonl") & {s.key for s in specs})
    if args.ray_address and done < len(specs):
        sweep.connect_ray(args.ray_address)  # a head that does not answer or refuses us: one line, before any other
    if args.ray_address:
        how = f"ray cluster {args.ray_address}"
    else:
        how = "ray" if use_ray else f"{args.jobs} local processes" if args.jobs > 1 else "sequential"
    print(f"{len(specs)} runs, {done} already done, {how}", file=sys.stderr)

    def progress(row: dict) -> None:
        print(
            f"done {row['key']}: final {row['final_psnr']}, best {row['best_psnr']}, {row['seconds']:.0f} s",
            file=sys.stderr,
        )

    table, wall = sweep.sweep(
        specs,
        args.out,
        use_ray=use_ray,
        ray_address=args.ray_address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        jobs=max(1, args.jobs),
        stop_rule=args.stop_rule,
        on_row=progress,
    )
    print(table)
    print(f"wall time {wall:.1f} s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn bad input into exit code 2 with one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "sweep":
            return cmd_sweep(args)
    except InputError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return 0
