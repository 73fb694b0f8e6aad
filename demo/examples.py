"""Example images shipped in ``assets/`` (``demo/assets/`` when installed) and the synthetic zone plate that
shows spectral bias at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
# Installed from the wheel, the images are demo/assets/ (pyproject.toml maps the top-level assets/ folder to the
# subpackage demo.assets); in a checkout they are the top-level assets/. Wheels install as plain files, so a path
# (what Gradio serves) is all that is needed; importlib.resources would add nothing here.
ASSETS = _HERE / "assets" if (_HERE / "assets").is_dir() else _HERE.parent / "assets"

#: (file in assets/, task, "clean" or "degraded", caption) shown as clickable examples; the first is the default.
EXAMPLES: list[tuple[str, str, str, str]] = [
    ("house256.png", "denoise", "clean", "House · denoise"),
    ("zoneplate.png", "denoise", "clean", "Zone plate · denoise"),
    ("astronaut.png", "sr", "clean", "Astronaut · ×4 SR"),
    ("coffee.png", "inpaint", "clean", "Coffee · inpaint"),
    ("chelsea.png", "jpeg", "clean", "Cat · JPEG"),
    ("camera.png", "enhance", "clean", "Camera · enhance"),
    ("house128_noisy.png", "denoise", "degraded", "Noisy photo (no ground truth)"),
]
DEFAULT_EXAMPLE = ASSETS / EXAMPLES[0][0]


def zone_plate(size: int = 256, top: float = 0.22) -> np.ndarray:
    """size×size grayscale zone plate in [0, 1]: cos(π·k·r²) with local frequency rising to ``top`` cycles/px at
    r = size/2."""
    c = (size - 1) / 2
    y, x = np.mgrid[:size, :size] - c
    r2 = x**2 + y**2
    phase = np.pi * top * r2 / (size / 2)  # d(phase)/dr / 2π = top · r / (size/2)
    return (0.5 + 0.5 * np.cos(phase)).astype(np.float32)
