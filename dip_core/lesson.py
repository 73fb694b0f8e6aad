"""The paper's lessons, found in a run's own curves (replays and live runs alike), never written by hand.

A curve here is a dict of lists over snapshots: ``iter``, ``psnr`` (None where the clean image is unknown) and
``fbc`` (five bands, band 1 lowest). Events, in the order a run shows them:

- ``low_first``: the first snapshot where band 1 is ≥ LOW_FITTED reproduced while band 5 is still < HIGH_UNFITTED;
- ``best``: the peak of the smoothed PSNR (once it has fallen DROP_DB below it, or the run has ended);
- ``noise``: after the peak, band 5 has risen NOISE_RISE above its value at the peak while PSNR fell NOISE_DROP_DB;
- ``control``: at the end, the controlled network lost at most HOLD_SHARE of what vanilla DIP lost from its peak;
- ``bound``: learned bounds (``lipschitz="auto"``, a curve's ``bound``: their geometric mean) have moved BOUND_MOVE
  from where they started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .summary import moving_average

LOW_FITTED, HIGH_UNFITTED = 0.9, 0.3
SMOOTH = 5  # snapshots in the PSNR's centred moving average (one snapshot's PSNR jitters by tenths of a dB)
DROP_DB = 0.5  # a live run's peak counts as the peak once PSNR has fallen this far below it
NOISE_RISE, NOISE_DROP_DB = 0.1, 1.0
DECAY_DB, HOLD_SHARE = 1.0, 0.5  # "the control holds": vanilla lost ≥ DECAY_DB, the controlled ≤ HOLD_SHARE of it
BOUND_MOVE = 0.1  # "the bound moves": the learned bounds' geometric mean is 10 % from its first snapshot's

TITLES = {
    "low_first": "Low frequencies first",
    "best": "The best image",
    "noise": "Now it fits the noise",
    "control": "The control holds",
    "bound": "The bound moves",
}


@dataclass(frozen=True)
class Event:
    """One lesson: where (``lane``, ``iter``), which (``kind``), and its caption."""

    kind: str
    iter: int
    lane: str
    caption: str

    @property
    def title(self) -> str:
        return TITLES[self.kind]


def smoothed_psnr(curve: Mapping[str, Sequence]) -> np.ndarray | None:
    """The PSNR's centred moving average over SMOOTH snapshots (None when the clean image is unknown)."""
    psnr = curve.get("psnr") or []
    if not psnr or any(p is None for p in psnr):
        return None
    return moving_average(psnr, SMOOTH)


def peak(curve: Mapping[str, Sequence], done: bool = True) -> tuple[int, float] | None:
    """(snapshot index, smoothed PSNR) of the peak, once the run is over or has fallen DROP_DB below it."""
    s = smoothed_psnr(curve)
    if s is None or not len(s):
        return None
    i = int(np.argmax(s))
    if not done and s[-1] > s[i] - DROP_DB:
        return None
    return i, float(s[i])


def lane_events(curve: Mapping[str, Sequence], lane: str, label: str, done: bool = True) -> list[Event]:
    """The single-run lessons of one lane: low frequencies first, the best image, fitting the noise."""
    iters, fbc = list(curve["iter"]), np.array([b if b is not None else [np.nan] * 5 for b in curve["fbc"]], float)
    events = []
    for i in range(len(iters)):
        if fbc[i, 0] >= LOW_FITTED and fbc[i, 4] < HIGH_UNFITTED:
            events.append(
                Event(
                    "low_first",
                    iters[i],
                    lane,
                    f"{label}, iteration {iters[i]}: band 1 (the lowest frequencies) is "
                    f"{fbc[i, 0]:.0%} reproduced, band 5 (the highest) {fbc[i, 4]:.0%}. "
                    "The network learns the coarse image first.",
                )
            )
            break
    events += bound_event(curve, lane, label, done)
    top = peak(curve, done)
    if top is None:
        return events
    i, best = top
    events.append(
        Event(
            "best",
            iters[i],
            lane,
            f"{label}, iteration {iters[i]}: the best image, {best:.2f} dB (smoothed PSNR). "
            "Stopped here, DIP restores the image.",
        )
    )
    s = smoothed_psnr(curve)
    for j in range(i + 1, len(iters)):
        if fbc[j, 4] >= fbc[i, 4] + NOISE_RISE and s[j] <= best - NOISE_DROP_DB:
            events.append(
                Event(
                    "noise",
                    iters[j],
                    lane,
                    f"{label}, iteration {iters[j]}: band 5 has risen from {fbc[i, 4]:.2f} at the peak to "
                    f"{fbc[j, 4]:.2f} while PSNR fell {best - s[j]:.1f} dB. What is left to fit is the "
                    "noise, and the network fits it.",
                )
            )
            break
    return events


def bound_event(curve: Mapping[str, Sequence], lane: str, label: str, done: bool = True) -> list[Event]:
    """Where learned bounds first moved BOUND_MOVE from their start (none for a fixed λ)."""
    bound, iters = curve.get("bound"), list(curve["iter"])
    if not bound or any(b is None for b in bound):
        return []
    first = bound[0]
    i = next((i for i, b in enumerate(bound) if abs(b / first - 1) >= BOUND_MOVE), None)
    if i is None:
        return []
    way = "tightened" if bound[i] < first else "loosened"
    end = f", and end at {bound[-1]:.2f}" if done else ""
    return [
        Event(
            "bound",
            iters[i],
            lane,
            f"{label}, iteration {iters[i]}: the learned bounds have {way} from λ {first:.2f} to {bound[i]:.2f} "
            f"(their geometric mean over the layers){end}. A layer's bound grows only while loosening it lowers "
            "the loss by more than the penalty costs; elsewhere the penalty pulls it down.",
        )
    ]


def drop(curve: Mapping[str, Sequence]) -> tuple[float, float] | None:
    """(peak, loss from the peak to the end) of the smoothed PSNR, in dB."""
    s = smoothed_psnr(curve)
    if s is None or not len(s):
        return None
    return float(s.max()), float(s.max() - s[-1])


def control_event(
    vanilla: Mapping[str, Sequence], controlled: Mapping[str, Sequence], label: str, lane: str
) -> Event | None:
    """ "The control holds", at the end of the shorter run: vanilla lost ≥ DECAY_DB from its peak and the
    controlled network at most HOLD_SHARE of that (None when it did not, or PSNR is unknown)."""
    n = min(len(vanilla["iter"]), len(controlled["iter"]))
    cut = lambda c: {k: list(v)[:n] for k, v in c.items()}  # noqa: E731 - the same steps for both
    v, c = drop(cut(vanilla)), drop(cut(controlled))
    if v is None or c is None or v[1] < DECAY_DB or c[1] > HOLD_SHARE * v[1]:
        return None
    end = list(controlled["iter"])[n - 1]
    return Event(
        "control",
        end,
        lane,
        f"By iteration {end} vanilla DIP has lost {v[1]:.1f} dB from its peak ({v[0]:.2f} dB); {label} "
        f"lost {c[1]:.1f} dB from its own ({c[0]:.2f} dB). The control holds the image.",
    )


def lesson(
    curves: Mapping[str, Mapping[str, Sequence]], labels: Mapping[str, str], vanilla: str = "vanilla", done: bool = True
) -> list[Event]:
    """Every event of one or more lanes (``curves`` by lane name), by iteration; the control event compares each
    other lane with ``vanilla`` when it is among them."""
    events = [e for name, c in curves.items() for e in lane_events(c, name, labels[name], done)]
    if done and vanilla in curves:
        for name, c in curves.items():
            if name != vanilla and (e := control_event(curves[vanilla], c, labels[name], name)):
                events.append(e)
    order = list(TITLES)
    return sorted(events, key=lambda e: (e.iter, order.index(e.kind)))


__all__ = ["Event", "TITLES", "bound_event", "control_event", "lane_events", "lesson", "peak"]
