"""The curves' palette (demo/plots.py) is colour-blind-safe: WCAG contrast on the plot's background, CIEDE2000
distances seen normally and under simulated deuteranopia and protanopia, runs and bands in hues of their own, and
cues besides colour (dashes, band labels). The colour science is written out here, in numpy, and checked against
its published test data."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from demo import plots
from demo.plots import (
    BACKGROUND,
    BAND_COLORS,
    BASELINE_COLOR,
    EVENT_COLOR,
    LABEL_GAP,
    NOISE_COLOR,
    RUN_COLORS,
    RUN_DASHES,
    band_labels,
    ink,
    spread,
)

#: The palette's stated floors: WCAG 1.4.11 (graphics) and 1.4.3 (text), and the least ΔE2000 between two curves
GRAPHIC_CONTRAST, TEXT_CONTRAST, MIN_DELTA_E = 3.0, 4.5, 10.0
#: Runs and bands "share no hue": every run and every band at least this far apart in CIELCh hue angle (normal vision)
MIN_HUE_GAP = 30.0

# sRGB primaries to CIE XYZ (IEC 61966-2-1) and the D65 white point
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
D65 = np.array([0.95047, 1.0, 1.08883])
# Machado, Oliveira & Fernandes (2009), "A Physiologically-based Model for Simulation of Color Vision Deficiency",
# IEEE TVCG 15(6): the severity-1.0 matrices, applied to linear RGB
CVD = {
    "normal": np.eye(3),
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
}
RUNS = {f"run {name}": c for name, c in RUN_COLORS.items()}
BANDS = {f"band {k + 1}": c for k, c in enumerate(BAND_COLORS)}
CURVES = {**RUNS, **BANDS, "baseline": BASELINE_COLOR}
ALL = {**CURVES, "event": EVENT_COLOR, "noise": NOISE_COLOR}


def linear(color: str) -> np.ndarray:
    """A ``#rrggbb`` colour's linear RGB (the sRGB transfer curve undone)."""
    c = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(color: str) -> float:
    """WCAG 2.x relative luminance."""
    return float(linear(color) @ (0.2126, 0.7152, 0.0722))


def contrast(a: str, b: str) -> float:
    """WCAG 2.x contrast ratio (1 to 21)."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of a linear-RGB colour (clipped to the gamut)."""
    t = SRGB_TO_XYZ @ np.clip(rgb, 0, 1) / D65
    d = 6 / 29
    f = np.where(t > d**3, np.cbrt(t), t / (3 * d**2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def seen(color: str, vision: str) -> np.ndarray:
    """CIELAB of ``color`` as ``vision`` (a CVD key) sees it."""
    return lab(CVD[vision] @ linear(color))


def hue(color: str) -> float:
    """CIELCh hue angle in degrees."""
    _, a, b = seen(color, "normal")
    return math.degrees(math.atan2(b, a)) % 360


def hue_gap(h1: float, h2: float) -> float:
    return abs((h1 - h2 + 180) % 360 - 180)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIEDE2000 colour difference (kL = kC = kH = 1), as Sharma, Wu & Dalal (2005) write it out."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1 = math.degrees(math.atan2(b1, a1)) % 360 if c1 else 0.0
    h2 = math.degrees(math.atan2(b2, a2)) % 360 if c2 else 0.0
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    big_dh = 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh / 2))
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_mean = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_mean = (h1 + h2) / 2
    else:
        h_mean = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(h_mean - 30))
        + 0.24 * math.cos(math.radians(2 * h_mean))
        + 0.32 * math.cos(math.radians(3 * h_mean + 6))
        - 0.20 * math.cos(math.radians(4 * h_mean - 63))
    )
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    r_c = 2 * math.sqrt(c_mean**7 / (c_mean**7 + 25**7))
    r_t = -math.sin(math.radians(60 * math.exp(-(((h_mean - 275) / 25) ** 2)))) * r_c
    dl, dc, dhh = (l2 - l1) / s_l, (c2 - c1) / s_c, big_dh / s_h
    return math.sqrt(dl**2 + dc**2 + dhh**2 + r_t * dc * dhh)


# Sharma, Wu & Dalal (2005), Color Res. Appl. 30(1), Table 1: pairs 1, 7, 9, 11, 13, 15, 16, 17, 19, 25, 33, 34
# (the hue wrap at 0°/360°, achromatic colours, the blue region's rotation term, dark colours)
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, -0.001, 2.49), (50.0, 0.0011, -2.49), 4.7461),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize(("lab1", "lab2", "published"), SHARMA)
def test_ciede2000_matches_the_published_pairs(lab1, lab2, published):
    """Within the table's rounding (4 decimals: at most 5e-5; these pairs measured 4.2e-5), both ways round."""
    for x, y in ((lab1, lab2), (lab2, lab1)):
        assert ciede2000(np.array(x), np.array(y)) == pytest.approx(published, abs=1e-4)


def test_the_colour_science_anchors():
    """WCAG's own anchors (white on black 21:1; #767676 the lightest grey at 4.5:1 on white), sRGB white at
    L* 100, and the simulations keep greys grey and change a red."""
    assert contrast("#ffffff", "#000000") == pytest.approx(21)
    assert contrast("#767676", "#ffffff") >= 4.5 > contrast("#777777", "#ffffff")
    assert seen("#ffffff", "normal") == pytest.approx([100, 0, 0], abs=0.01)
    for vision in CVD:
        assert ciede2000(seen("#808080", vision), seen("#808080", "normal")) < 0.5
    assert ciede2000(seen("#cc3311", "deuteranopia"), seen("#cc3311", "normal")) > 20


@pytest.mark.parametrize("name", ALL)
def test_every_colour_stands_out_from_the_background(name):
    """WCAG 1.4.11: a curve, a mark or a reference line at 3:1 or more on the plot."""
    assert contrast(ALL[name], BACKGROUND) >= GRAPHIC_CONTRAST


@pytest.mark.parametrize("name", ALL)
def test_text_in_a_colour_is_readable(name):
    """``ink`` gives 4.5:1 text (WCAG 1.4.3), the colour itself where it already is, else the same hue darker."""
    c = ALL[name]
    assert contrast(ink(c), BACKGROUND) >= TEXT_CONTRAST
    if contrast(c, BACKGROUND) >= TEXT_CONTRAST:
        assert ink(c) == c
    else:
        assert luminance(ink(c)) < luminance(c)
        assert hue_gap(hue(ink(c)), hue(c)) < 5 or np.hypot(*seen(c, "normal")[1:]) < 5


@pytest.mark.parametrize("vision", CVD)
def test_every_two_curves_differ_in_every_vision(vision):
    """Runs, bands and the baseline: every pair at least MIN_DELTA_E apart, seen normally and under simulated
    deuteranopia and protanopia."""
    close = [
        f"{a}/{b}: {d:.1f}"
        for (a, ca), (b, cb) in itertools.combinations(CURVES.items(), 2)
        if (d := ciede2000(seen(ca, vision), seen(cb, vision))) < MIN_DELTA_E
    ]
    assert not close, f"{vision}: pairs under ΔE2000 {MIN_DELTA_E}: {close}"


def test_runs_and_bands_share_no_hue():
    """Every run against every band: at least MIN_HUE_GAP degrees apart in CIELCh hue."""
    near = [
        f"{r}/{b}: {g:.0f}°"
        for (r, cr), (b, cb) in itertools.product(RUNS.items(), BANDS.items())
        if (g := hue_gap(hue(cr), hue(cb))) < MIN_HUE_GAP
    ]
    assert not near, f"runs and bands closer than {MIN_HUE_GAP}° in hue: {near}"


def test_the_bands_are_one_ramp():
    """Band 1 (low) to band 5 (high) step lighter: the order reads without the hues."""
    lightness = [seen(c, "normal")[0] for c in BAND_COLORS]
    assert all(b > a for a, b in itertools.pairwise(lightness)), lightness


def test_every_run_has_dashes_of_its_own():
    """Colour is not the only cue between runs: each run's line and its SSIM line have dashes no other line has."""
    assert set(RUN_DASHES) == set(RUN_COLORS)
    dashes = [d for pair in RUN_DASHES.values() for d in pair]
    assert len(set(dashes)) == len(dashes), RUN_DASHES
    valid = {"solid", "dot", "dash", "longdash", "dashdot", "longdashdot"}
    assert set(dashes) <= valid


def track(bands: list[list[float | None] | None]) -> SimpleNamespace:
    """A stand-in for a run with the FBC rows ``bands`` (one per logged iteration, None: not logged)."""
    rows = {"iter": [10 * n for n in range(len(bands))], "fbc": bands}
    return SimpleNamespace(column=lambda key: rows[key])


@pytest.mark.parametrize(
    "last",
    [
        [0.9, 0.91, 0.92, 0.5, 0.1],  # three bands within a hair
        [1.0, 1.0, 1.0, 1.0, 1.0],  # all at the panel's top
        [0.0, 0.0, 0.01, 0.02, 0.0],  # all at its bottom
        [0.1, 0.3, 0.5, 0.7, 0.9],  # already apart
    ],
)
def test_band_labels_name_each_band_apart(last):
    """One label per band ("b1" … "b5", in its colour's ink) at its line's last point, LABEL_GAP apart, on the
    panel, in the order of the lines' ends."""
    labels = band_labels(track([[0.5] * 5, last]), "fbc", 3)
    assert sorted(a["text"] for a in labels) == [f"b{k + 1}" for k in range(5)]
    for a in labels:
        k = int(a["text"][1:]) - 1
        assert a["font"]["color"] == ink(BAND_COLORS[k])
        assert (a["x"], a["xref"], a["yref"]) == (10, "x3", "y3")
    ys = [a["y"] for a in labels]
    assert all(b - a >= LABEL_GAP - 1e-9 for a, b in itertools.pairwise(ys))
    assert 0 <= ys[0] and ys[-1] <= 1.02
    ends = [last[int(a["text"][1:]) - 1] for a in labels]
    assert ends == sorted(ends)


def test_band_labels_skip_bands_without_values():
    """A band with no finite value has no label; one logged earlier is labelled at its last finite point."""
    labels = band_labels(track([[0.2, 0.4, None, 0.6, 0.8], [0.3, float("nan"), None, None, 0.9], None]), "fbc", 4)
    assert {a["text"]: a["x"] for a in labels} == {"b1": 10, "b2": 0, "b4": 0, "b5": 10}


@pytest.mark.parametrize(
    "ys",
    [[0.5, 0.5, 0.5], [0.0, 0.01, 0.02, 0.9], [0.95, 1.0, 1.02, 1.02], [0.1, 0.4, 0.8], [], [0.3]],
)
def test_spread_keeps_order_and_gap(ys):
    out = spread(ys, 0.075, 0.0, 1.02)
    assert len(out) == len(ys)
    assert all(b - a >= 0.075 - 1e-9 for a, b in itertools.pairwise(out))
    assert all(0 <= y <= 1.02 for y in out)
    if all(b - a >= 0.075 for a, b in itertools.pairwise(ys)):
        assert out == ys  # nothing to move


def run(name: str) -> SimpleNamespace:
    """A stand-in for a finished run named ``name`` (its colour and dashes), without the clean image."""
    rows = {"iter": [0, 10, 20], "fbc": [[0.2, 0.4, 0.5, 0.6, 0.8]] * 3, "loss": [1.0, 0.5, 0.2], "ratio": [9, 3, 1]}
    return SimpleNamespace(name=name, short=name, last=None, column=lambda key: rows[key])


def test_the_curves_wear_the_palette():
    """A two-run figure draws each run in its colour and dash and labels every band on both FBC panels."""
    fig = plots.curves_dict([run("vanilla"), run("controlled")], 20, has_clean=False)
    runs = {
        (t["legendgroup"], t["line"]["color"], t["line"]["dash"]) for t in fig["data"] if t["legendgroup"] in RUN_COLORS
    }
    assert runs == {(n, RUN_COLORS[n], RUN_DASHES[n][0]) for n in ("vanilla", "controlled")}
    bands = {t["line"]["color"] for t in fig["data"] if t["legendgroup"].startswith("band")}
    assert bands == set(BAND_COLORS)
    labels = [a for a in fig["layout"]["annotations"] if a.get("yref") in ("y3", "y4")]
    assert sorted(a["text"] for a in labels) == sorted([f"b{k + 1}" for k in range(5)] * 2)
