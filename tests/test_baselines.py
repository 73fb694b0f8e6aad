"""The classical OpenCV baselines: each beats its observation on a real photo, colour and grey, never sees the clean
image, and a missing OpenCV leaves the engine and the CLI working; the CLI writes baseline.png and summary keys."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip_core import baselines as B
from dip_core.io import load_image, resize_max_side, save_png
from dip_core.metrics import psnr
from dip_core.tasks import baseline, make_task, observed_task, to_image

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--preset", "cpu", "--width", "8", "--iters", "4", "--every", "2", "--quiet", "--device", "cpu"]


def grey(img: np.ndarray) -> np.ndarray:
    return img.mean(axis=2, keepdims=True)


@pytest.fixture(scope="module")
def house128() -> np.ndarray:
    return resize_max_side(load_image(ROOT / "assets" / "house256.png")[0], 128)[0]


@pytest.fixture(params=["colour", "grey"])
def photo(request, house128) -> np.ndarray:
    return house128 if request.param == "colour" else grey(house128)


def scored(task) -> B.Baseline:
    b = baseline(task)
    assert b.unavailable is None and b.image is not None, b.unavailable
    assert b.image.shape == to_image(task.clean).shape and b.image.dtype == np.float32
    assert 0 <= b.image.min() and b.image.max() <= 1 and b.seconds >= 0
    return b


def observation_psnr(task) -> float:
    return psnr(to_image(task.observation), to_image(task.clean))


def test_nl_means_beats_the_noise_by_several_db(photo):
    task = make_task("denoise", photo, 25, seed=0)
    b = scored(task)
    assert b.method.startswith("OpenCV NL-means") and b.psnr > observation_psnr(task) + 5
    assert 0 < b.ssim <= 1


def test_jpeg_baseline_is_never_worse_than_the_jpeg(photo):
    for q in (10, 40):
        task = make_task("jpeg", photo, q)
        assert scored(task).psnr >= observation_psnr(task) - 0.05, q


def test_jpeg_rule_covers_every_quality():
    for kind in ("colour", "grey"):
        rules = [B.jpeg_rule(q, kind == "colour") for q in range(1, 101)]
        assert all(r is None or r[0] in ("bilateral", "nlm") for r in rules) and None in rules
    assert B.jpeg_rule(10, True) is not None  # at q10 a filter beat the JPEG on the fitting images


def test_inpainting_fills_the_holes(photo):
    task = make_task("inpaint", photo, 0.5, seed=0)
    b = scored(task)
    assert b.psnr > observation_psnr(task) + 15
    known = to_image(task.mask)[:, :, 0] > 0.5
    assert np.abs(b.image - to_image(task.observation))[known].max() <= 1 / 255 + 1e-6  # known pixels kept


def test_upscaling_beats_nearest_neighbour(photo):
    task = make_task("sr", photo, 4)
    b = scored(task)
    nearest = np.kron(to_image(task.observation), np.ones((4, 4, 1), dtype=np.float32))
    assert b.psnr > psnr(nearest, to_image(task.clean)) + 1
    assert b.method == f"OpenCV {B.SR_METHOD} upscaling ×4"
    other = "bicubic" if B.SR_METHOD == "lanczos" else "lanczos"
    assert B.upscale(to_image(task.observation), task.out_size, other).shape == b.image.shape


def test_detail_enhance_follows_the_gain(photo):
    task = make_task("enhance", photo, 2)
    b = baseline(task)
    assert b.image.shape == photo.shape and b.psnr is None  # no ground truth of an enhanced image
    assert np.allclose(B.enhance(photo, 0), photo, atol=1e-6)

    def detail(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img, axis=1)).mean())

    assert detail(B.enhance(photo, 1)) > detail(photo) * 1.05
    assert detail(B.enhance(photo, 3)) > detail(B.enhance(photo, 1))


@pytest.mark.parametrize("name, level", [("denoise", 25), ("jpeg", 10), ("inpaint", 0.5), ("sr", 2), ("enhance", 1)])
def test_baseline_never_sees_the_clean_image(house128, name, level):
    task = make_task(name, house128[:64, :64], level, seed=0)
    blind = replace(task, clean=None)
    a, b = baseline(task), baseline(blind)
    assert np.array_equal(a.image, b.image) and a.method == b.method
    assert b.psnr is None and b.ssim is None


def test_tiny_and_observed_images(house128):
    tiny = house128[:16, :16]
    for task in (make_task("denoise", tiny, 25), make_task("inpaint", grey(tiny), 0.5), observed_task("sr", tiny, 8)):
        b = baseline(task)
        assert b.unavailable is None and b.image.shape[:2] == task.out_size


def test_every_baseline_runs_at_512_px(house128):
    """Every baseline takes a 512² image and times itself (how fast: python -m benchmarks baseline-speed, not a
    test; 0.44 s at most on the 2-core Xeon, benchmarks/RESULTS.md)."""
    big = np.kron(house128, np.ones((4, 4, 1), dtype=np.float32))
    for name, level in [("denoise", 25), ("jpeg", 10), ("inpaint", 0.5), ("sr", 4), ("enhance", 1)]:
        task = make_task(name, big, level, seed=0)
        b = baseline(task)
        assert b.unavailable is None and b.image.shape[:2] == task.out_size and b.seconds >= 0, name


NO_CV2 = "import sys; sys.modules['cv2'] = None\n"


def test_without_opencv_the_engine_imports_and_the_baseline_says_why():
    code = NO_CV2 + (
        "import numpy as np, dip_core, dip_core.cli\n"
        "from dip_core.tasks import baseline\n"
        "from dip_core.tasks import make_task\n"
        "b = baseline(make_task('denoise', np.full((32, 32, 3), 0.5, np.float32), 25))\n"
        "print(b.image is None, b.unavailable)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (
        "True classical baseline unavailable: OpenCV is missing: pip install opencv-python-headless "
        "(see requirements.txt)"
    )


# ------------------------------------------------------------------ the CLI


def cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + "import sys; from dip_core.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def image64(tmp_path_factory, house128) -> Path:
    path = tmp_path_factory.mktemp("img") / "house64.png"
    save_png(resize_max_side(house128, 64)[0], path)
    return path


def test_cli_writes_the_baseline_beside_the_run(tmp_path, image64):
    out = tmp_path / "d"
    res = cli("run", "--task", "denoise", "--image", str(image64), "--out", str(out), *FAST)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    base = summary["baseline"]
    assert set(base) == {"method", "psnr", "ssim", "seconds"} and base["method"].startswith("OpenCV NL-means")
    observed = np.asarray(Image.open(out / "observed.png"), dtype=np.float32) / 255
    clean = load_image(image64)[0]
    assert base["psnr"] > psnr(observed, clean) + 3 and 0 < base["ssim"] <= 1
    assert np.asarray(Image.open(out / "baseline.png")).shape == (64, 64, 3)


def test_cli_baseline_of_a_grey_observed_image_has_null_scores(tmp_path, image64):
    src = tmp_path / "grey.png"
    Image.open(image64).convert("L").save(src)
    out = tmp_path / "g"
    res = cli("run", "--task", "jpeg", "--observed", "--image", str(src), "--out", str(out), *FAST)
    assert res.returncode == 0, res.stderr
    base = json.loads((out / "summary.json").read_text())["baseline"]
    assert base["psnr"] is None and base["ssim"] is None and base["seconds"] >= 0
    assert np.asarray(Image.open(out / "baseline.png")).shape == (64, 64)


def test_cli_without_opencv_reports_the_baseline_unavailable_and_runs(tmp_path, image64):
    out = tmp_path / "n"
    res = cli("run", "--task", "sr", "--level", "2", "--image", str(image64), "--out", str(out), *FAST, prelude=NO_CV2)
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if "baseline" in line]
    assert notes == [
        "note: classical baseline unavailable: OpenCV is missing: pip install opencv-python-headless "
        "(see requirements.txt)"
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline"]["psnr"] is None and "OpenCV is missing" in summary["baseline"]["unavailable"]
    assert (out / "result.png").is_file() and not (out / "baseline.png").exists()


# ------------------------------------------------------------------ the quality benchmark


def test_quality_benchmark_writes_a_table_and_resumes(tmp_path, image64):
    from benchmarks import quality

    out = tmp_path / "q"
    args = [
        "--images",
        str(image64),
        "--task",
        "denoise",
        "--level",
        "25",
        "--out",
        str(out),
        "--max-side",
        "32",
        "--width",
        "8",
        "--iters",
        "20",
        "--every",
        "5",
    ]
    assert quality.main(args) == 0
    (row,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert row["opencv"]["psnr"] > row["observation"]["psnr"] + 1
    assert row["vanilla"]["best_iter"] <= 20 and row["controlled"]["stop_rule"] == "discrepancy"
    text = (out / "report.md").read_text()
    assert "| house64.png (32×32) |" in text and "**mean PSNR**" in text
    try:
        import bm3d  # noqa: F401
    except ImportError:
        assert row["cbm3d"] == {"unavailable": "bm3d is not installed (pip install -r requirements-bench.txt)"}
    else:
        assert row["cbm3d"]["psnr"] > row["opencv"]["psnr"] and "CBM3D" in text
    assert quality.main(args) == 0  # a rerun skips the image already done
    assert len((out / "results.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("task", "level", "name", "method"),
    [
        ("denoise", 25, "NL-means", "OpenCV NL-means (h 15.0)"),
        ("inpaint", 0.5, "inpainting", "OpenCV inpainting (Navier-Stokes, radius 1)"),
        ("sr", 4, "lanczos upscaling ×4", "OpenCV lanczos upscaling ×4"),
        ("enhance", 1, "detailEnhance", "OpenCV detailEnhance (gain 1)"),
    ],
)
def test_a_baseline_carries_its_short_name_beside_its_full_description(house128, task, level, name, method):
    """The app's panel shows the short name (no description parsed back); reports show the full one."""
    b = baseline(make_task(task, house128, level))
    assert (b.name, b.method) == (name, method)
    jpeg_itself = B.Method("JPEG itself", "no OpenCV filter beat it", library="")
    assert str(jpeg_itself) == "JPEG itself (no OpenCV filter beat it)"
