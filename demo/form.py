"""The ``run`` endpoint's form: what the page or an API client sends (``RunForm``, each value's default written once,
here) and what it gets back (``RUN_OUTPUTS``, then the page-only ``CAPTION_OUTPUTS``)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from dip_core import InputError

#: The ``run`` endpoint's outputs by name, in the order it returns them (the baseline panel last: it came later, and
#: API clients index the others)
RUN_OUTPUTS = ("observation", "vanilla", "result", "clean", "curves", "spectrum", "status", "files", "baseline")
#: What the page also shows, after RUN_OUTPUTS: the captions under the two runs' images (their PSNR changes every
#: frame). They are buttons, whose values API clients do not receive, so the endpoint's outputs stay RUN_OUTPUTS.
CAPTION_OUTPUTS = ("vanilla_caption", "result_caption")


@dataclass(frozen=True)
class RunForm:
    """One run as asked for, its values unchecked (``demo.inputs.parse_form`` checks them); None means the task's or
    the device's default. The fields, in order, are the ``run`` endpoint's parameters and the page's widgets."""

    image: Any
    task: Any = "denoise"
    level: Any = None
    lipschitz: Any = None
    upsample: Any = None
    gaussian_sigma: Any = None
    iterations: Any = None
    seed: Any = 0
    auto_stop: Any = "off"
    compare: Any = True
    observed: Any = False
    mask: Any = None
    max_side: Any = None
    width: Any = None
    lr: Any = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The fields' names, in order: the endpoint's parameters."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> RunForm:
        """The form of ``values`` by name (a missing one takes its default, a missing image is None); an unknown
        name is refused with one line (``InputError``)."""
        unknown = [name for name in values if name not in cls.names()]
        if unknown:
            raise InputError(f"unknown parameter {unknown[0]!r}: a run takes {', '.join(cls.names())}")
        return cls(**{"image": None, **values})

    @classmethod
    def parameters(cls) -> list[inspect.Parameter]:
        """The fields as keyword-only parameters with their defaults (an endpoint's signature: its API names)."""
        kind = inspect.Parameter.KEYWORD_ONLY
        return [
            inspect.Parameter(f.name, kind, default=inspect.Parameter.empty if f.default is MISSING else f.default)
            for f in fields(cls)
        ]
