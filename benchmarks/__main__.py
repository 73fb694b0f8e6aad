"""One entry point for every benchmark: ``python -m benchmarks COMMAND [options]`` (``COMMAND --help`` for its own)."""

from __future__ import annotations

import importlib
import sys

#: command → (module under benchmarks/, what it does). A module is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "speed": ("step", "ms per training step: the authors' step against ours, in one process"),
    "pair-speed": ("pair_step", "a compare run's two networks stepped separately, in threads or stacked"),
    "baseline-speed": ("baseline_speed", "seconds of each task's classical (OpenCV) baseline"),
    "curves": ("curves", "two or more numeric paths on House: do their PSNR curves agree?"),
    "report": ("reproduce", "the reproduction report: vanilla against controlled DIP per image and seed"),
    "quality": ("quality", "DIP against CBM3D and the OpenCV baseline on the same observations"),
    "portability": ("portability", "the outcome tests under other CPU code paths, and their spread"),
    "app-overhead": ("app_overhead", "the live run's own cost: the app's steps/s against the bare pair's"),
    "load": ("load", "the app on loopback under concurrent clients, replay viewers or a hostile crowd"),
    "replays": ("make_replays", "build the app's replays of the paper's experiments"),
    "auto-lambda": ("auto_lambda", "rules that set the Lipschitz bound from the run, against vanilla DIP and fixed λ"),
    "app-gpu": ("app_gpu", "the app as a ZeroGPU visitor meets it (gradio_client, GPU budget on)"),
}
#: retired one-off commands → the report that says which commit holds their script.
RETIRED: dict[str, str] = {
    "live-default": "reports/live_default/README.md",
    "fit-baselines": "reports/baselines_fit.md",
    "gpu-defaults": "reports/gpu_defaults_cpu/report.md",
    "compile-check": "reports/cpu_epyc/README.md",
    "decode-memory": "docs/app.md",
    "holdout": "reports/auto_lambda/notes.md",
    "time-to-quality": "benchmarks/RESULTS.md",
}


def usage() -> str:
    """The list of commands, one line each."""
    lines = ["usage: python -m benchmarks COMMAND [options]   (python -m benchmarks COMMAND --help)", "", "commands:"]
    return "\n".join(lines + [f"  {name:16s} {text}" for name, (_, text) in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    """Run ``COMMAND`` with the rest of ``argv``; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in RETIRED:
        print(f"error: {argv[0]!r} is retired; {RETIRED[argv[0]]} says which commit holds it", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = not argv or argv[0] in ("-h", "--help")
        print(
            usage() if known else f"error: unknown command {argv[0]!r}\n\n{usage()}",
            file=sys.stdout if known else sys.stderr,
        )
        return 0 if known else 2
    module = importlib.import_module(f"benchmarks.{COMMANDS[argv[0]][0]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
