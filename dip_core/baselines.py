"""Classical baselines with OpenCV, on arrays, computed from the observation (and mask) only; each task's spec picks
its one (``TaskSpec.baseline``) from the functions here, and ``dip_core.tasks.baseline`` runs and scores it.

Their parameter rules were fitted once on two CBSD68 images outside every test set (0000.png, 0001.png) by
``python -m benchmarks fit-baselines DATA``; the figures are in ``reports/baselines_fit.md``.
OpenCV (``opencv-python-headless``) is imported lazily, so the engine imports without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .metrics import psnr, ssim

#: NL-means strength h = slope · σ (σ and h on 0-255), fitted per colour/grey (reports/baselines_fit.md).
NLM_SLOPE = {"colour": 0.6, "grey": 0.95}
#: JPEG: per fitted quality, the best filter on the fitting images: ("bilateral", d, σ colour) or None = the JPEG
#: itself; a quality uses the rule of the nearest fitted one (the lower on a tie).
JPEG_RULE: dict[str, dict[int, tuple[str, int, float] | None]] = {
    "colour": {
        10: ("bilateral", 13, 40.0),
        20: ("bilateral", 13, 30.0),
        30: ("bilateral", 11, 30.0),
        40: ("bilateral", 13, 20.0),
        50: ("bilateral", 11, 20.0),
        60: ("bilateral", 5, 30.0),
        70: ("bilateral", 5, 30.0),
        80: ("bilateral", 5, 20.0),
        90: ("bilateral", 3, 20.0),
        95: None,
    },
    "grey": {
        10: ("bilateral", 11, 20.0),
        20: ("bilateral", 13, 10.0),
        30: ("bilateral", 7, 10.0),
        40: ("bilateral", 7, 10.0),
        50: ("bilateral", 7, 10.0),
        60: ("bilateral", 5, 10.0),
        70: ("bilateral", 3, 10.0),
        80: ("bilateral", 3, 10.0),
        90: ("bilateral", 3, 10.0),
        95: None,
    },
}
#: inpainting: cv2.inpaint method and radius (chosen on two images, never per image).
INPAINT_RULE = ("ns", 1)
#: super-resolution: the cv2.resize interpolation reported as the baseline ("bicubic" or "lanczos").
SR_METHOD = "lanczos"


def opencv():
    """The cv2 module, or an ImportError of one line saying how to install it."""
    try:
        import cv2  # lazy on purpose: OpenCV is optional, the engine imports without it
    except ImportError:
        raise ImportError("OpenCV is missing: pip install opencv-python-headless (see requirements.txt)") from None
    return cv2


@dataclass(frozen=True)
class Method:
    """What a baseline is: its short name (a panel's label) and settings; ``str()`` gives both, as reports show it."""

    name: str  # "NL-means"
    settings: str = ""  # "h 15.0"
    library: str = "OpenCV"

    def __str__(self) -> str:
        text = f"{self.library} {self.name}".strip()
        return f"{text} ({self.settings})" if self.settings else text


@dataclass
class Baseline:
    """A classical baseline's result: its image (None when it could not run), what it is, and how long it took."""

    method: str  # in full, with its settings: "OpenCV NL-means (h 15.0)"
    image: np.ndarray | None  # H×W×C float32 in [0, 1]
    seconds: float | None
    unavailable: str | None = None  # why it could not run (one line)
    psnr: float | None = None
    ssim: float | None = None
    name: str = "unavailable"  # short, for a panel: "NL-means"

    def summary(self) -> dict:
        """The ``baseline`` entry of summary.json: method, psnr, ssim, seconds (and why it is unavailable)."""
        out = {"method": self.method, "psnr": self.psnr, "ssim": self.ssim, "seconds": self.seconds}
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out


def _u8(img: np.ndarray) -> np.ndarray:
    """H×W×C float in [0, 1] → uint8, H×W for one channel, BGR order for three (OpenCV's)."""
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.ascontiguousarray(u8[:, :, 0] if u8.shape[2] == 1 else u8[:, :, ::-1])


def _float(u8: np.ndarray) -> np.ndarray:
    """OpenCV's uint8 (H×W or BGR) → H×W×C float32 RGB in [0, 1]."""
    out = u8.astype(np.float32) / 255
    return out[:, :, None] if out.ndim == 2 else np.ascontiguousarray(out[:, :, ::-1])


def nlm_strength(sigma: float, colour: bool) -> float:
    """NL-means h (0-255) for noise σ (0-255) by the fitted rule."""
    return NLM_SLOPE["colour" if colour else "grey"] * float(sigma)


def denoise(y: np.ndarray, sigma: float, h: float | None = None) -> np.ndarray:
    """OpenCV NL-means (7×7 patches, 21×21 search) of an H×W×C image in [0, 1]; h from σ unless given."""
    cv2 = opencv()
    colour = y.shape[2] == 3
    h = nlm_strength(sigma, colour) if h is None else h
    if colour:
        return _float(cv2.fastNlMeansDenoisingColored(_u8(y), None, h, h, 7, 21))
    return _float(cv2.fastNlMeansDenoising(_u8(y), None, h, 7, 21))


def bilateral(y: np.ndarray, d: int, sigma_color: float) -> np.ndarray:
    """OpenCV bilateral filter (diameter d, colour σ on 0-255, space σ = d) of an image in [0, 1]."""
    cv2 = opencv()
    return _float(cv2.bilateralFilter(_u8(y), d, sigma_color, d))


def jpeg_rule(quality: float, colour: bool) -> tuple[str, int, float] | None:
    """The JPEG filter for a quality (the nearest fitted one's), or None where the JPEG itself is best."""
    rules = JPEG_RULE["colour" if colour else "grey"]
    nearest = min(rules, key=lambda q: (abs(q - quality), q))
    return rules[nearest]


def deblock(y: np.ndarray, quality: float) -> tuple[np.ndarray, Method]:
    """The JPEG baseline: the filter of the fitted rule, or the JPEG unchanged; (image, method)."""
    rule = jpeg_rule(quality, y.shape[2] == 3)
    if rule is None:
        return y.copy(), Method("JPEG itself", "no OpenCV filter beat it at this quality", library="")
    kind, d, s = rule
    if kind == "nlm":
        return denoise(y, 0, float(d)), Method("NL-means", f"h {d:g}")
    return bilateral(y, d, s), Method("bilateral filter", f"d {d}, σ colour {s:g}")


def inpaint(y: np.ndarray, mask: np.ndarray, method: str | None = None, radius: int | None = None) -> np.ndarray:
    """OpenCV inpainting (Telea or Navier-Stokes) of the pixels where ``mask`` (H×W×1, 1 = known) is 0."""
    cv2 = opencv()
    method, radius = method or INPAINT_RULE[0], radius or INPAINT_RULE[1]
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    holes = np.ascontiguousarray((mask[:, :, 0] < 0.5).astype(np.uint8) * 255)
    return _float(cv2.inpaint(_u8(y), holes, radius, flag))


def upscale(y: np.ndarray, size: tuple[int, int], method: str = SR_METHOD) -> np.ndarray:
    """cv2.resize of a low-resolution image to ``size`` = (H, W), bicubic or Lanczos (8×8 taps)."""
    cv2 = opencv()
    flag = cv2.INTER_CUBIC if method == "bicubic" else cv2.INTER_LANCZOS4
    return np.clip(_float(cv2.resize(_u8(y), (size[1], size[0]), interpolation=flag)), 0, 1)


def enhance(y: np.ndarray, gain: float) -> np.ndarray:
    """cv2.detailEnhance scaled to the task's gain k: x + (k/2)(detailEnhance(x) − x) (detailEnhance is k = 2).

    A grey image is enhanced as three equal channels and averaged back.
    """
    cv2 = opencv()
    u8 = _u8(y)
    grey = u8.ndim == 2
    detail = _float(cv2.detailEnhance(cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR) if grey else u8, sigma_s=10, sigma_r=0.15))
    if grey:
        detail = detail.mean(axis=2, keepdims=True)
    return np.clip(y + gain / 2 * (detail - y), 0, 1).astype(np.float32)


def scored(make: Callable[[], tuple[np.ndarray, Method]], clean: np.ndarray | None = None) -> Baseline:
    """The baseline ``make()`` returns (image, method), timed, and scored against ``clean`` (H×W×C in [0, 1]) when
    given; if it cannot run (OpenCV missing or refusing the image), ``unavailable`` says why in one line."""
    start = time.perf_counter()
    try:
        image, method = make()
    except Exception as err:  # noqa: BLE001 - cv2.error, ImportError: the DIP run goes on without it
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        return Baseline("unavailable", None, None, unavailable=f"classical baseline unavailable: {reason}")
    seconds = time.perf_counter() - start
    result = Baseline(str(method), image.astype(np.float32), round(seconds, 4), name=method.name)
    if clean is not None:
        result.psnr, result.ssim = psnr(image, clean), ssim(image, clean)
    return result
