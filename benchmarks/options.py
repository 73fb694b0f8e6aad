"""The options the benchmark commands share, declared once: each command's parser takes the ones it uses."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

import torch

#: name → (flag, argparse keywords). A command names the ones it takes and their defaults (``parser``).
SHARED: dict[str, tuple[str, dict]] = {
    "size": ("--size", dict(type=int, help="image side in pixels (images are resized to it)")),
    "steps": ("--steps", dict(type=int, help="optimisation steps")),
    "width": ("--width", dict(type=int, help="channels of the network's layers")),
    "lipschitz": ("--lipschitz", dict(type=float, help="λ of the controlled network")),
    "lr": ("--lr", dict(type=float, help="Adam's learning rate")),
    "seed": ("--seed", dict(type=int, help="seed of the noise and the network")),
    "device": ("--device", dict(choices=("auto", "cpu", "cuda"), help="where the networks run")),
    "threads": ("--threads", dict(type=int, help="torch intra-op threads (default: torch's)")),
    "image": ("--image", dict(help="the image to run on (House when not given)")),
    "json": ("--json", dict(action="store_true", help="print one JSON object")),
}


def parser(command: str, doc: str, **shared: object) -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks COMMAND`` with the shared options named in ``shared`` (name=default)."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks {command}", description=doc.strip().splitlines()[0])
    for name, default in shared.items():
        flag, kw = SHARED[name]
        suffix = "" if default is None or default is False else " (default: %(default)s)"
        p.add_argument(flag, **{**kw, "default": default, "help": kw["help"] + suffix})
    return p


def record(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """An options record ``cls`` (a dataclass) from the parsed ``args`` of its fields' names, ``given`` overriding."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)} | given)


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads when ``--threads`` was given."""
    if threads:
        torch.set_num_threads(threads)
