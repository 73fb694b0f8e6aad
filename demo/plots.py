"""Plotly figures of a run: PSNR/SSIM, blur/sharpness ratio, FBC bands over iterations, and the 2-D spectrum ratio.

Figures are built as plain dicts (fast enough to redraw every half second) and wrapped unvalidated in a
``go.Figure`` for ``gr.Plot``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import orjson
import plotly.graph_objects as go
from gradio.components.plot import PlotData

from dip_core.metrics import BAND_EDGES

if TYPE_CHECKING:
    from dip_core.lesson import Event

    from .records import Track

# The curves' palette, colour-blind-safe (tests/test_palette.py checks it): every colour is at least 3:1 on the white
# plot (WCAG 1.4.11) and every two curves at least ΔE2000 10 apart, seen normally and under simulated deuteranopia and
# protanopia (Machado et al. 2009; the closest, 12.0). The runs are orange, blue and green, the baseline near-black,
# the lesson marks grey; the bands a ramp from dark plum (band 1, low) to light salmon (band 5, high), each at least
# 30° in CIELCh hue from every run (38° the closest; a dichromat sees only blues and yellows, so there lightness, the
# dashes and the labels tell them apart). Colour is never the only cue: the runs differ by dash (RUN_DASHES), the
# bands carry their number at the end of their lines, the baseline and the noise level their names. Text in these
# colours is drawn in ``ink(colour)`` (4.5:1, WCAG 1.4.3).
BACKGROUND = "#ffffff"
RUN_COLORS = {"vanilla": "#dc7800", "controlled": "#087ccc", "other": "#2c6828"}
RUN_DASHES = {"vanilla": ("dash", "dashdot"), "controlled": ("solid", "dot"), "other": ("longdash", "longdashdot")}
EVENT_COLOR = "#909090"
BASELINE_COLOR, BASELINE_NAME = "#242424", "classical baseline (OpenCV)"
NOISE_COLOR = "#555555"
BAND_COLORS = ("#54105c", "#6830a0", "#a42c64", "#b85060", "#e36767")  # band 1 (low) … 5 (high)
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=12, color="#222")
GRID = dict(showgrid=True, gridcolor="#e8e8ee", zeroline=False, linecolor="#999", ticks="outside", tickcolor="#ccc")
GAP_X, GAP_Y = 0.2, 0.2


#: The relative luminance of text at 4.5:1 on white (WCAG's (1 + 0.05) / (Y + 0.05) = 4.5), a hair darker
TEXT_LUMINANCE = 1.05 / 4.5 - 0.05 - 1e-3


def _linear(color: str) -> np.ndarray:
    """A ``#rrggbb`` colour's linear RGB (sRGB's transfer curve undone)."""
    c = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


@functools.lru_cache(maxsize=64)
def ink(color: str) -> str:
    """``color`` for small text on white: itself at 4.5:1 or more (WCAG 1.4.3), else the same hue darkened to 4.5:1
    (its linear RGB scaled down, so its chromaticity stays)."""
    lin = _linear(color)
    y = float(lin @ (0.2126, 0.7152, 0.0722))
    if y <= TEXT_LUMINANCE:
        return color
    c = lin * (TEXT_LUMINANCE / y)
    srgb = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    return "#" + "".join(f"{int(v * 255):02x}" for v in srgb)  # rounded down: never lighter


def label_font(color: str, size: int = 11) -> dict:
    """The font of a label in a curve's ``color``: its ``ink``, haloed in the background (plotly's "auto" shadow) so
    that a curve under it does not cut it."""
    return dict(color=ink(color), size=size, shadow="auto")


def as_figure(fig: dict) -> go.Figure:
    """Wrap a figure dict for ``gr.Plot`` without plotly's (slow) validation."""
    return go.Figure(fig, _validate=False)


def plot_data(fig: dict) -> PlotData:
    """A figure dict as ``gr.Plot`` sends it: its JSON, made at once (no plotly objects, whose copies, validation and
    encoding cost most of a frame: a replay's, or a live run's in the server)."""
    return PlotData(type="plotly", plot=orjson.dumps(fig, option=orjson.OPT_SERIALIZE_NUMPY).decode())


def _axis(**kwargs) -> dict:
    """An axis dict without the None entries."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _list(values: Sequence) -> list:
    """Plain floats for JSON, None where a value is missing or not finite (converted at once, not one by one)."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):  # None among the values
        a = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    out = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        out[i] = None
    return out


def _cell(row: int, col: int) -> tuple[list[float], list[float]]:
    """x and y domains of a 2×2 grid cell (row 1 on top)."""
    w, h = (1 - GAP_X) / 2, (1 - GAP_Y) / 2
    x0 = (col - 1) * (w + GAP_X)
    y0 = (2 - row) * (h + GAP_Y)
    return [x0, x0 + w], [y0, y0 + h]


def _title(text: str, row: int, col: int) -> dict:
    xd, yd = _cell(row, col)
    return dict(
        text=f"<b>{text}</b>",
        x=sum(xd) / 2,
        y=yd[1] + 0.01,
        xref="paper",
        yref="paper",
        showarrow=False,
        xanchor="center",
        yanchor="bottom",
        font=dict(size=13),
    )


def _base_layout(height: int) -> dict:
    return dict(
        template="plotly_white",
        height=height,
        font=FONT,
        margin=dict(l=55, r=45, t=30, b=95),
        legend=dict(orientation="h", yanchor="top", y=-0.13, xanchor="center", x=0.5, font=dict(size=11)),
        hovermode="x unified",
        paper_bgcolor=BACKGROUND,
        plot_bgcolor=BACKGROUND,
        annotations=[],
        shapes=[],
    )


def curves_figure(*args, **kwargs) -> go.Figure:
    """``curves_dict``'s figure for ``gr.Plot``."""
    return as_figure(curves_dict(*args, **kwargs))


def curves_dict(
    tracks: Sequence[Track],
    iterations: int,
    has_clean: bool,
    noise_energy: float | None = None,
    baseline_psnr: float | None = None,
    events: Sequence[Event] = (),
    cursor: int | None = None,
    clean_bands: bool = True,
) -> dict:
    """2×2 panels on one iteration axis: PSNR (+ SSIM) or loss, the auto-stop signal, and FBC bands per run.

    The auto-stop signal is the blur/sharpness ratio, or, with the noise-level stop (``noise_energy`` given),
    the loss against that threshold (dashed). ``baseline_psnr`` (the classical baseline's) is a horizontal line.
    ``events`` (dip_core.lesson) are numbered markers on every panel; ``cursor`` a replay's iteration (a line);
    ``clean_bands=False``: a single run's curves have no FBC against the clean image (replays keep none).
    """
    signal = "loss" if noise_energy is not None else "ratio"
    x_range = [0, max(1, iterations)]
    layout = _curves_layout(x_range, has_clean)
    layout["annotations"] += _panel_titles(tracks, has_clean, signal, clean_bands)
    if learned(tracks):  # a learned bound's λ (dotted), on the signal panel's right axis
        layout["yaxis6"] = dict(
            overlaying="y2", side="right", anchor="x2", showgrid=False, tickformat=".2f", tickfont=dict(size=10)
        )
    data = []
    if noise_energy is not None:
        data.append(_noise_line(x_range, noise_energy))
    if has_clean and baseline_psnr is not None and np.isfinite(baseline_psnr):
        data.append(_baseline_line(x_range, baseline_psnr))
        layout["annotations"].append(_baseline_label(x_range, baseline_psnr))
    for t in tracks:
        color = RUN_COLORS.get(t.name, RUN_COLORS["controlled"])
        data += _run_lines(t, color, RUN_DASHES.get(t.name, RUN_DASHES["controlled"]), has_clean, signal)
        if t.last is not None and t.last.stopped:
            _mark_stop(layout, t.last.stop_iter, color)
    for n, (t, key, axis) in enumerate(_band_panels(tracks, has_clean, clean_bands)):
        data += _band_lines(t, key, axis, legend=n == 0)
        layout["annotations"] += band_labels(t, key, axis)
    mark_events(layout, events, cursor, span=x_range[1])
    return dict(data=data, layout=layout)


def bound_path(track: Track) -> list | None:
    """A run's learned bound over its snapshots (their geometric mean: ``lipschitz="auto"``), else None: a live
    track's records, a replay's curves."""
    records, run = getattr(track, "records", None), getattr(track, "run", None)
    path = [r.get("bound") for r in records] if records is not None else run and run.curves.get("bound")
    return path if path and any(b is not None for b in path) else None


def learned(tracks: Sequence[Track]) -> bool:
    """Whether a run's bound is learned."""
    return any(bound_path(t) is not None for t in tracks)


def _curves_layout(x_range: list[int], has_clean: bool) -> dict:
    """The four panels' axes (one iteration range), with SSIM's right axis over the first when the clean image is
    known (else the loss on a log axis)."""
    layout = _base_layout(560)
    for n, (row, col) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)], start=1):
        xd, yd = _cell(row, col)
        suffix = "" if n == 1 else str(n)
        layout[f"xaxis{suffix}"] = _axis(
            **GRID,
            domain=xd,
            anchor=f"y{suffix}",
            range=x_range,
            matches=None if n == 1 else "x",
            title=dict(text="iteration", standoff=4) if row == 2 else None,
        )
        layout[f"yaxis{suffix}"] = dict(GRID, domain=yd, anchor=f"x{suffix}", tickformat=".3~g")
    for n in (3, 4):
        layout[f"yaxis{n}"]["range"] = [0, 1.02]
    layout["yaxis3"]["title"] = dict(text="FBC", standoff=2)
    layout["yaxis"]["title"] = dict(text="PSNR (dB)" if has_clean else "MSE", standoff=2)
    layout["yaxis2"]["type"] = "log"  # the ratio is huge at the start (a flat output has no sharpness)
    if has_clean:
        layout["yaxis5"] = dict(
            overlaying="y",
            side="right",
            anchor="x",
            range=[0, 1],
            showgrid=False,
            tickformat=".1f",
            tickfont=dict(size=10),
        )  # SSIM
    else:
        layout["yaxis"]["type"] = "log"
    return layout


def _panel_titles(tracks: Sequence[Track], has_clean: bool, signal: str, clean_bands: bool) -> list[dict]:
    """The four panels' titles: the FBC panels name their run when two runs are compared (an empty one has none)."""
    top = "PSNR (thick) and SSIM (thin)" if has_clean else "Loss: MSE to the observation"
    if signal == "loss":
        second = "Loss and noise level (auto-stop signal)"
    else:
        second = "Blur / sharpness ratio (auto-stop signal)"
    if learned(tracks):  # shorter, to leave room for the learned bound's (the panel's title is one line)
        second = ("Loss" if signal == "loss" else "Ratio") + " (auto-stop) · learned λ (dotted)"
    if len(tracks) == 2:
        fbc_titles = [f"FBC per band: {t.short}" for t in tracks]
    else:
        fbc_titles = [
            "FBC per band vs the observation",
            "FBC per band vs the clean image" if has_clean and clean_bands else "",
        ]
    titles = [_title(top, 1, 1), _title(second, 1, 2)]
    return titles + [_title(t, 2, c + 1) for c, t in enumerate(fbc_titles) if t]


def _noise_line(x_range: list[int], noise_energy: float) -> dict:
    """The noise-level stop's threshold on the signal panel: a trace, not a shape (shapes and annotations on a log
    axis want log10 coordinates)."""
    return dict(
        type="scatter",
        mode="lines+text",
        x=x_range,
        y=[noise_energy] * 2,
        xaxis="x2",
        yaxis="y2",
        name="noise level",
        showlegend=False,
        text=["", "noise level"],
        textposition="top left",
        textfont=label_font(NOISE_COLOR),
        line=dict(color=NOISE_COLOR, dash="dash", width=1.5),
        hovertemplate="noise level %{y:.3~g}<extra></extra>",
    )


def _baseline_line(x_range: list[int], baseline_psnr: float) -> dict:
    """The classical baseline's PSNR on the first panel, dotted."""
    return dict(
        type="scatter",
        mode="lines",
        x=x_range,
        y=[float(baseline_psnr)] * 2,
        name=BASELINE_NAME,
        showlegend=True,
        line=dict(color=BASELINE_COLOR, dash="dot", width=2),
        hovertemplate="classical baseline %{y:.2f} dB<extra></extra>",
    )


def _baseline_label(x_range: list[int], baseline_psnr: float) -> dict:
    """The baseline's name at the right end of its line: an annotation, drawn over every curve (SSIM's too)."""
    return dict(
        text=f"OpenCV {baseline_psnr:.1f} dB",
        x=x_range[1],
        y=float(baseline_psnr),
        xref="x",
        yref="y",
        xanchor="right",
        yanchor="top",
        showarrow=False,
        font=label_font(BASELINE_COLOR),
    )


def _run_lines(t: Track, color: str, dashes: tuple[str, str], has_clean: bool, signal: str) -> list[dict]:
    """One run's traces: PSNR (+ SSIM and its best-so-far star) or loss on the first panel, and its auto-stop
    ``signal`` on the second; ``dashes``: its lines' dash and its SSIM's (RUN_DASHES)."""
    line = dict(type="scatter", mode="lines", x=t.column("iter"), legendgroup=t.name)
    key = "psnr" if has_clean else "loss"
    out = [dict(line, y=_list(t.column(key)), name=t.short, line=dict(color=color, width=2.5, dash=dashes[0]))]
    if has_clean:
        out.append(
            dict(
                line,
                y=_list(t.column("ssim")),
                name=f"{t.short} SSIM",
                showlegend=False,
                yaxis="y5",
                line=dict(color=color, width=1.5, dash=dashes[1]),
            )
        )
        if t.last is not None and t.last.best_iter is not None:
            out.append(_best_star(t, color))
    out.append(
        dict(
            line,
            y=_list(t.column(signal)),
            name=f"{t.short} {signal}",
            showlegend=False,
            xaxis="x2",
            yaxis="y2",
            line=dict(color=color, width=2, dash=dashes[0]),
        )
    )
    bound = bound_path(t)
    if bound is not None:  # learned bounds (λ auto): their path, on the signal panel's right axis
        out.append(
            dict(
                line,
                y=_list(bound),
                name=f"{t.short} λ (learned, geometric mean)",
                showlegend=False,
                xaxis="x2",
                yaxis="y6",
                line=dict(color=color, width=1.5, dash="dot"),
                hovertemplate="λ %{y:.3f} at %{x}<extra></extra>",
            )
        )
    return out


def _best_star(t: Track, color: str) -> dict:
    """A live run's best PSNR so far: a star at its iteration."""
    s = t.last
    return dict(
        type="scatter",
        mode="markers+text",
        x=[s.best_iter],
        y=[s.best_psnr],
        name=f"{t.short} best",
        showlegend=False,
        text=[f"★ best {s.best_psnr:.1f}"],
        textposition="top center",
        textfont=label_font(color),
        cliponaxis=False,
        marker=dict(symbol="star", size=13, color=color, line=dict(color="white", width=1)),
    )


def _mark_stop(layout: dict, stop_iter: int, color: str) -> None:
    """A run's auto-stop: a dashed line on the signal panel, labelled with its iteration."""
    layout["shapes"].append(
        dict(
            type="line",
            x0=stop_iter,
            x1=stop_iter,
            y0=0,
            y1=1,
            xref="x2",
            yref="y2 domain",
            line=dict(color=color, dash="dash", width=1.5),
        )
    )
    layout["annotations"].append(
        dict(
            text=f"auto-stop {stop_iter}",
            x=stop_iter,
            y=1,
            xref="x2",
            yref="y2 domain",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font=label_font(color),
        )
    )


def _band_panels(tracks: Sequence[Track], has_clean: bool, clean_bands: bool) -> list[tuple[Track, str, int]]:
    """(run, FBC key, axis) of each FBC panel: one per run when two are compared, else the run against the
    observation and (when known and kept) against the clean image."""
    if len(tracks) == 2:
        return [(t, "fbc", 3 + i) for i, t in enumerate(tracks)]
    panels = [(t, "fbc", 3) for t in tracks]
    if has_clean and clean_bands:
        panels += [(t, "fbc_clean", 4) for t in tracks]
    return panels


def _bands(t: Track, key: str) -> np.ndarray:
    """Run ``t``'s FBC ``key`` as an (iterations × bands) array, NaN where a snapshot has none."""
    rows = [r if r is not None else [None] * len(BAND_EDGES) for r in t.column(key)]
    return np.array(rows, dtype=float).reshape(-1, len(BAND_EDGES))


def _band_lines(t: Track, key: str, axis: int, legend: bool) -> list[dict]:
    """The five FBC bands of run ``t``'s ``key`` on panel ``axis`` (in the legend once: ``legend``)."""
    values = _bands(t, key)
    out = []
    for k in range(len(BAND_EDGES)):
        name = f"band {k + 1}" + (" (low)" if k == 0 else " (high)" if k == len(BAND_EDGES) - 1 else "")
        out.append(
            dict(
                type="scatter",
                mode="lines",
                x=t.column("iter"),
                y=_list(values[:, k]),
                name=name,
                legendgroup=f"band{k}",
                showlegend=legend,
                xaxis=f"x{axis}",
                yaxis=f"y{axis}",
                line=dict(color=BAND_COLORS[k], width=2),
            )
        )
    return out


#: The least vertical gap between two band labels, in FBC (a panel's 0-1.02 is about 170 px: 0.075 is 13 px)
LABEL_GAP = 0.075


def band_labels(t: Track, key: str, axis: int) -> list[dict]:
    """Each band's number ("b1" … "b5", in its colour) at the end of its line on panel ``axis``: the bands told apart
    without their colours. Labels closer than ``LABEL_GAP`` are spread apart, in their lines' order."""
    values, x = _bands(t, key), t.column("iter")
    ends = []
    for k in range(values.shape[1]):
        (finite,) = np.nonzero(np.isfinite(values[:, k]))
        if len(finite):
            ends.append((float(values[finite[-1], k]), k, int(x[finite[-1]])))
    ends.sort()
    ys = spread([y for y, _, _ in ends], LABEL_GAP, 0.0, 1.02)
    return [
        dict(
            text=f"b{k + 1}",
            x=it,
            y=y,
            xref=f"x{axis}",
            yref=f"y{axis}",
            xanchor="left",
            xshift=3,
            showarrow=False,
            font=label_font(BAND_COLORS[k]),
        )
        for y, (_, k, it) in zip(ys, ends)
    ]


def spread(ys: Sequence[float], gap: float, lo: float, hi: float) -> list[float]:
    """Ascending ``ys`` moved apart to at least ``gap`` each, their order kept, within [lo, hi] where they fit."""
    out = list(ys)
    for j in range(1, len(out)):
        out[j] = max(out[j], out[j - 1] + gap)
    if out and out[-1] > hi:
        out[-1] = hi
        for j in range(len(out) - 2, -1, -1):
            out[j] = min(out[j], out[j + 1] - gap)
    if out and out[0] < lo:
        out = [y + lo - out[0] for y in out]
    return out


#: Lesson marks closer than this share of the iteration axis to one already placed go a row lower
MARK_GAP = 0.05


def mark_events(layout: dict, events: Sequence[Event], cursor: int | None, span: float | None = None) -> None:
    """Lesson events as dotted lines on the four panels, numbered ①②… above the first row (a mark that would overlap
    the one before it, within ``MARK_GAP`` of the ``span`` of the axis, a row lower); the cursor solid."""
    placed: list[float] = []  # the last mark's iteration on each row
    for n, e in enumerate(events, start=1):
        row = next((r for r, x in enumerate(placed) if span is None or e.iter - x >= MARK_GAP * span), len(placed))
        placed[row : row + 1] = [e.iter]
        for axis in ("x", "x2", "x3", "x4"):
            layout["shapes"].append(
                dict(
                    type="line",
                    x0=e.iter,
                    x1=e.iter,
                    y0=0,
                    y1=1,
                    xref=axis,
                    yref=f"y{axis[1:]} domain",
                    layer="below",
                    line=dict(color=EVENT_COLOR, dash="dot", width=1),
                )
            )
        layout["annotations"].append(
            dict(
                text=f"<b>{event_mark(n)}</b>",
                x=e.iter,
                y=1,
                xref="x",
                yref="y domain",
                showarrow=False,
                yanchor="top",
                yshift=-16 * row,
                font=label_font(EVENT_COLOR, 14),
                hovertext=f"{e.title}: iteration {e.iter}",
            )
        )
    if cursor is not None:
        layout["shapes"] += cursor_lines(cursor)


def cursor_lines(cursor: int) -> list[dict]:
    """A replay's iteration: a solid line on each of the four panels (the last shapes of a curves figure)."""
    return [
        dict(
            type="line",
            x0=cursor,
            x1=cursor,
            y0=0,
            y1=1,
            xref=axis,
            yref=f"y{axis[1:]} domain",
            line=dict(color="#111", width=1.5),
        )
        for axis in ("x", "x2", "x3", "x4")
    ]


def event_mark(n: int) -> str:
    """①, ②, … for the n-th lesson event (a number in parentheses past 20)."""
    return chr(0x2460 + n - 1) if 1 <= n <= 20 else f"({n})"


def spectrum_dict(maps: Sequence[tuple[str, np.ndarray]]) -> dict:
    """Heatmaps (stacked), one per (run's short name, ratio) of ``maps``, of the clipped ratio
    |F(output)| / |F(observation)| with the five FBC band circles."""
    n = max(1, len(maps))
    layout = _base_layout(560)
    layout.update(
        hovermode="closest",
        margin=dict(l=45, r=10, t=55, b=45),
        title=dict(
            text="<b>Spectrum ratio</b> |F(output)| / |F(observation)|",
            x=0.5,
            xanchor="center",
            y=0.985,
            font=dict(size=13),
        ),
    )
    gap = 0.12
    h = (1 - gap * (n - 1)) / n
    data = []
    for i, (name, ratio) in enumerate(maps):
        sfx = "" if i == 0 else str(i + 1)
        y0 = 1 - (i + 1) * h - i * gap
        rh, rw = ratio.shape
        aspect = rw / rh
        axis = dict(showgrid=False, zeroline=False, range=[-0.5, 0.5], ticks="outside", tickvals=[-0.5, 0, 0.5])
        title = dict(text="horizontal frequency (cycles/px)", standoff=2) if i == n - 1 else None
        layout[f"xaxis{sfx}"] = _axis(**axis, domain=[0, 1], anchor=f"y{sfx}", title=title)
        layout[f"yaxis{sfx}"] = dict(
            axis, domain=[y0, y0 + h], anchor=f"x{sfx}", scaleanchor=f"x{sfx}", range=[-0.5, 0.5], constrain="domain"
        )
        layout["annotations"].append(
            dict(
                text=name,
                x=0.5,
                y=y0 + h,
                xref="paper",
                yref="paper",
                showarrow=False,
                yanchor="bottom",
                font=dict(size=12),
            )
        )
        data.append(
            dict(
                type="heatmap",
                z=np.round(ratio.astype(np.float64), 2).tolist(),  # what the hover shows (float64: short JSON)
                x=np.linspace(-0.5, 0.5, rw).tolist(),
                y=np.linspace(-0.5, 0.5, rh).tolist(),
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=i == 0,
                xaxis=f"x{sfx}",
                yaxis=f"y{sfx}",
                colorbar=dict(thickness=10, len=0.5, y=1, yanchor="top", title=dict(text="ratio")),
                hovertemplate="fx %{x:.2f}, fy %{y:.2f}: %{z:.2f}<extra></extra>",
            )
        )
        layout["shapes"] += _band_circles(sfx, aspect)
    return dict(data=data, layout=layout)


def _band_circles(sfx: str, aspect: float) -> list[dict]:
    """The five FBC bands' outer circles on heatmap ``sfx``: the engine's radii (W/2)·k/5 in pixel units, i.e.
    0.5·k/5 cycles/px in x (``aspect`` times that in y)."""
    return [
        dict(
            type="circle",
            x0=-0.5 * edge,
            x1=0.5 * edge,
            y0=-0.5 * edge * aspect,
            y1=0.5 * edge * aspect,
            xref=f"x{sfx}",
            yref=f"y{sfx}",
            line=dict(color="white", width=1, dash="dot"),
        )
        for edge in BAND_EDGES
    ]
