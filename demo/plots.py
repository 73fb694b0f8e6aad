"""Plotly figures of a run: PSNR/SSIM, blur/sharpness ratio, FBC bands over iterations, and the 2-D spectrum ratio.

Figures are built as plain dicts (fast enough to redraw every half second) and wrapped unvalidated in a
``go.Figure`` for ``gr.Plot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from dip_core.metrics import BAND_EDGES

if TYPE_CHECKING:
    from dip_core.lesson import Event

    from .records import Track

RUN_COLORS = {"vanilla": "#e4572e", "controlled": "#2e6fd8", "other": "#7b3fb5"}
EVENT_COLOR = "#444"
BASELINE_COLOR, BASELINE_NAME = "#2a9d3c", "classical baseline (OpenCV)"
BAND_COLORS = ("#0b1f65", "#3a5fcd", "#3fa57a", "#e0a526", "#d7301f")  # band 1 (low) … 5 (high)
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=12, color="#222")
GRID = dict(showgrid=True, gridcolor="#e8e8ee", zeroline=False, linecolor="#999", ticks="outside", tickcolor="#ccc")
GAP_X, GAP_Y = 0.2, 0.2


def as_figure(fig: dict) -> go.Figure:
    """Wrap a figure dict for ``gr.Plot`` without plotly's (slow) validation."""
    return go.Figure(fig, _validate=False)


def _axis(**kwargs) -> dict:
    """An axis dict without the None entries."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _list(values: Sequence) -> list:
    return [None if v is None or not np.isfinite(v) else float(v) for v in values]


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
        paper_bgcolor="white",
        plot_bgcolor="white",
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
    data = []
    if noise_energy is not None:
        data.append(_noise_line(x_range, noise_energy))
    if has_clean and baseline_psnr is not None and np.isfinite(baseline_psnr):
        data.append(_baseline_line(x_range, baseline_psnr))
    for t in tracks:
        color = RUN_COLORS.get(t.name, RUN_COLORS["controlled"])
        data += _run_lines(t, color, has_clean, signal)
        if t.last is not None and t.last.stopped:
            _mark_stop(layout, t.last.stop_iter, color)
    for n, (t, key, axis) in enumerate(_band_panels(tracks, has_clean, clean_bands)):
        data += _band_lines(t, key, axis, legend=n == 0)
    mark_events(layout, events, cursor, span=x_range[1])
    return dict(data=data, layout=layout)


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
    top = "PSNR (solid) and SSIM (dotted)" if has_clean else "Loss: MSE to the observation"
    if signal == "loss":
        second = "Loss and noise level (auto-stop signal)"
    else:
        second = "Blur / sharpness ratio (auto-stop signal)"
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
        textfont=dict(color="#555", size=11),
        line=dict(color="#555", dash="dash", width=1.5),
        hovertemplate="noise level %{y:.3~g}<extra></extra>",
    )


def _baseline_line(x_range: list[int], baseline_psnr: float) -> dict:
    """The classical baseline's PSNR on the first panel, dashed."""
    return dict(
        type="scatter",
        mode="lines+text",
        x=x_range,
        y=[float(baseline_psnr)] * 2,
        name=BASELINE_NAME,
        showlegend=True,
        text=["", f"OpenCV {baseline_psnr:.1f} dB"],
        textposition="bottom left",
        textfont=dict(color=BASELINE_COLOR, size=11),
        cliponaxis=False,
        line=dict(color=BASELINE_COLOR, dash="dash", width=1.5),
        hovertemplate="classical baseline %{y:.2f} dB<extra></extra>",
    )


def _run_lines(t: Track, color: str, has_clean: bool, signal: str) -> list[dict]:
    """One run's traces: PSNR (+ SSIM and its best-so-far star) or loss on the first panel, and its auto-stop
    ``signal`` on the second."""
    line = dict(type="scatter", mode="lines", x=t.column("iter"), legendgroup=t.name)
    key = "psnr" if has_clean else "loss"
    out = [dict(line, y=_list(t.column(key)), name=t.short, line=dict(color=color, width=2.5))]
    if has_clean:
        out.append(
            dict(
                line,
                y=_list(t.column("ssim")),
                name=f"{t.short} SSIM",
                showlegend=False,
                yaxis="y5",
                line=dict(color=color, width=1.5, dash="dot"),
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
            line=dict(color=color, width=2),
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
        textfont=dict(color=color, size=11),
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
            font=dict(color=color, size=11),
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


def _band_lines(t: Track, key: str, axis: int, legend: bool) -> list[dict]:
    """The five FBC bands of run ``t``'s ``key`` on panel ``axis`` (in the legend once: ``legend``)."""
    rows = [r if r is not None else [None] * len(BAND_EDGES) for r in t.column(key)]
    values = np.array(rows, dtype=float).reshape(-1, len(BAND_EDGES))
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
                font=dict(color=EVENT_COLOR, size=14),
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


def spectrum_figure(maps: Sequence[tuple[str, np.ndarray]]) -> go.Figure:
    """``spectrum_dict``'s figure for ``gr.Plot``."""
    return as_figure(spectrum_dict(maps))


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
