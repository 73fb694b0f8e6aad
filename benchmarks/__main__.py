"""One entry point for every benchmark: ``python -m benchmarks COMMAND [options]`` (``COMMAND --help`` for its own)."""

from __future__ import annotations

import importlib
import sys

#: command → (module under benchmarks/, what it does). A module is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "speed": ("step", "ms per training step: the authors' step against ours, in one process"),
    "pair-speed": ("pair_step", "a compare run's two networks stepped separately, in threads or stacked"),
    "baseline-speed": ("baseline_speed", "seconds of each task's classical (OpenCV) baseline"),
    "time-to-quality": ("time_to_quality", "seconds until denoising House reaches 30 dB, reference and preset"),
    "curves": ("curves", "two or more numeric paths on House: do their PSNR curves agree?"),
    "report": ("reproduce", "the reproduction report: vanilla against controlled DIP per image and seed"),
    "quality": ("quality", "DIP against CBM3D and the OpenCV baseline on the same observations"),
    "portability": ("portability", "the outcome tests under other CPU code paths, and their spread"),
    "app-overhead": ("app_overhead", "the live run's own cost: the app's steps/s against the bare pair's"),
    "load": ("load", "the app on loopback under concurrent clients, replay viewers or a hostile crowd"),
    "decode-memory": ("decode_memory", "peak memory and time of decoding huge uploads"),
    "replays": ("replays", "build the app's replays of the paper's experiments"),
    "live-default": ("live_default", "choose the live CPU default from long runs, confirm it with compare runs"),
    "app-gpu": ("app_gpu", "the app as a ZeroGPU visitor meets it (gradio_client, GPU budget on)"),
    "gpu-defaults": ("gpu_defaults", "the curve of a candidate GPU default through the app's own code"),
    "fit-baselines": ("fit_baselines", "fit the classical baselines' parameter rules"),
    "compile-check": ("compile_check", "one network's CPU step eager against torch.compile, each in its own process"),
    "auto-lambda": ("auto_lambda", "issue 24: a bound the run sets itself, against vanilla and fixed λ, per image"),
}


def usage() -> str:
    """The list of commands, one line each."""
    lines = ["usage: python -m benchmarks COMMAND [options]   (python -m benchmarks COMMAND --help)", "", "commands:"]
    return "\n".join(lines + [f"  {name:16s} {text}" for name, (_, text) in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    """Run ``COMMAND`` with the rest of ``argv``; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
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
