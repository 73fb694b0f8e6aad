"""The one number check: a ``Range`` of accepted values, used by RunConfig's fields, the tasks' levels, the CLI,
the API and the app (the UI's sliders take their bounds from it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import InputError, shown


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: [lo, hi], whole ones only when ``integer``. Its ``check`` is the one number
    check of the engine, the CLI, the API and the app; a device's caps only ``narrow`` it."""

    lo: float
    hi: float
    integer: bool = False

    def narrow(self, hi: float | None) -> Range:
        """This range with its top lowered to ``hi`` (None: as it is)."""
        return self if hi is None else replace(self, hi=min(hi, self.hi))

    def check(self, name: str, value: Any) -> Any:
        """``value`` (a number, or a number as text) as a float, or an int when ``integer``; else ``InputError``:
        "width must be a number between 4 and 512, got 1000"."""
        refuse = InputError(f"{name} must be a number between {self.lo:g} and {self.hi:g}, got {shown(value)}")
        if isinstance(value, bool) or value is None:
            raise refuse
        try:
            v = float(value)
            ok = math.isfinite(v) and self.lo <= v <= self.hi
        except (TypeError, ValueError, OverflowError):
            raise refuse from None
        if not ok:
            raise refuse
        if self.integer:
            if v != int(v):
                raise InputError(f"{name} must be a whole number, got {shown(value)}")
            return int(v)
        return v
