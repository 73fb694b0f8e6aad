"""Fit the classical baselines' parameter rules once, on two images outside every test set.

``python -m benchmarks fit-baselines DATA [--images 0000.png 0001.png] [--out benchmarks/reports/baselines_fit.md]``
reads ``DATA/bsd68/<image>`` (CBSD68; no benchmark of this project tests on it), degrades each image as the
engine does (seeded noise, the engine's JPEG, Bernoulli masks, the Lanczos-2 downsampling), scores every
candidate parameter by PSNR against the clean image, and writes the table the constants of
``dip_core/baselines.py`` were set from. Colour and grey (the luma of the same images) are fitted apart.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

import numpy as np

from dip_core import baselines as B
from dip_core.io import load_image
from dip_core.machine import cpu_model
from dip_core.metrics import GRAY_WEIGHTS, psnr
from dip_core.tasks import make_task, to_image

from .options import parser

SIGMAS = (10, 15, 25, 35, 50)
NLM_SLOPES = tuple(round(0.2 + 0.05 * i, 2) for i in range(21))  # 0.20 … 1.20
QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
BILATERAL = tuple((d, s) for d in (3, 5, 7, 9, 11, 13) for s in (10.0, 20.0, 30.0, 40.0, 60.0, 80.0))
JPEG_NLM = (2.0, 3.0, 5.0, 7.0, 9.0, 12.0, 15.0)
KEEPS = (0.2, 0.5, 0.8)
INPAINT = tuple((m, r) for m in ("telea", "ns") for r in (1, 2, 3, 5))
SR_FACTORS = (2, 4, 8)


def grey(img: np.ndarray) -> np.ndarray:
    """The luma of an RGB image as H×W×1."""
    w = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
    return np.clip((img * w).sum(axis=2, keepdims=True), 0, 1).astype(np.float32)


def fit(images: list[np.ndarray]) -> dict:
    """Every candidate's mean PSNR per task level, colour and grey; and the chosen rules."""
    out: dict = {"denoise": {}, "jpeg": {}, "inpaint": {}, "sr": {}}
    for kind in ("colour", "grey"):
        imgs = images if kind == "colour" else [grey(i) for i in images]
        # denoising: h = slope · σ, one slope for every σ
        table = {}
        for sigma in SIGMAS:
            tasks = [make_task("denoise", x, sigma, seed=0) for x in imgs]
            ys = [to_image(t.observation) for t in tasks]
            table[sigma] = {
                "noisy": float(np.mean([psnr(y, x) for y, x in zip(ys, imgs)])),
                **{
                    a: float(np.mean([psnr(B.denoise(y, sigma, a * sigma), x) for y, x in zip(ys, imgs)]))
                    for a in NLM_SLOPES
                },
            }
        mean = {a: float(np.mean([table[s][a] for s in SIGMAS])) for a in NLM_SLOPES}
        out["denoise"][kind] = {"table": table, "mean": mean, "slope": max(mean, key=mean.get)}
        # JPEG: per quality, the JPEG itself against every bilateral filter
        table = {}
        for q in QUALITIES:
            tasks = [make_task("jpeg", x, q) for x in imgs]
            ys = [to_image(t.observation) for t in tasks]
            row = {"jpeg": float(np.mean([psnr(y, x) for y, x in zip(ys, imgs)]))}
            for d, s in BILATERAL:
                row[f"bilateral {d} {s:g}"] = float(np.mean([psnr(B.bilateral(y, d, s), x) for y, x in zip(ys, imgs)]))
            for h in JPEG_NLM:
                row[f"nlm {h:g}"] = float(np.mean([psnr(B.denoise(y, 0, h), x) for y, x in zip(ys, imgs)]))
            table[q] = row
        out["jpeg"][kind] = {"table": table, "best": {q: max(r, key=r.get) for q, r in table.items()}}
        # inpainting: one method and radius for every keep ratio
        table = {}
        for keep in KEEPS:
            tasks = [make_task("inpaint", x, keep, seed=0) for x in imgs]
            table[keep] = {
                f"{m} {r}": float(
                    np.mean(
                        [
                            psnr(B.inpaint(to_image(t.observation), to_image(t.mask), m, r), x)
                            for t, x in zip(tasks, imgs)
                        ]
                    )
                )
                for m, r in INPAINT
            }
        mean = {k: float(np.mean([table[p][k] for p in KEEPS])) for k in table[KEEPS[0]]}
        out["inpaint"][kind] = {"table": table, "mean": mean, "best": max(mean, key=mean.get)}
        # super-resolution: bicubic or Lanczos for every factor
        table = {}
        for f in SR_FACTORS:
            tasks = [make_task("sr", x, f) for x in imgs]
            table[f] = {
                m: float(
                    np.mean([psnr(B.upscale(to_image(t.observation), t.out_size, m), to_image(t.clean)) for t in tasks])
                )
                for m in ("bicubic", "lanczos")
            }
        mean = {m: float(np.mean([table[f][m] for f in SR_FACTORS])) for m in ("bicubic", "lanczos")}
        out["sr"][kind] = {"table": table, "mean": mean, "best": max(mean, key=mean.get)}
    return out


def markdown(res: dict, names: list[str], seconds: float) -> str:
    """The fit as a report."""
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Classical baselines: the parameter rules, fitted once",
        "",
        f"`python -m benchmarks fit-baselines DATA` on CBSD68 {', '.join(names)} (481×321, outside every test set),",
        f"{when}, {cpu_model()}, {seconds:.0f} s. Mean PSNR (dB) of the two images;",
        "the chosen rule per task is in bold and is what `dip_core/baselines.py` uses.",
        "",
    ]
    for kind in ("colour", "grey"):
        d = res["denoise"][kind]
        lines += [f"## Denoising, {kind}: NL-means h = slope · σ (7×7 patches, 21×21 search)", ""]
        shown = [a for a in NLM_SLOPES if round(a * 20) % 2 == 0 or a == d["slope"]]
        lines += [
            "| σ | noisy | " + " | ".join(f"{a:g}" for a in shown) + " | best slope |",
            "|---|---|" + "---|" * len(shown) + "---|",
        ]
        for s, row in d["table"].items():
            best = max(NLM_SLOPES, key=lambda a: row[a])
            cells = [f"**{row[a]:.2f}**" if a == d["slope"] else f"{row[a]:.2f}" for a in shown]
            lines.append(f"| {s} | {row['noisy']:.2f} | " + " | ".join(cells) + f" | {best:g} |")
        lines += [
            "",
            f"Chosen: slope **{d['slope']:g}** (best mean over the five σ: {d['mean'][d['slope']]:.2f} dB).",
            "",
        ]
        j = res["jpeg"][kind]
        lines += [
            f"## JPEG, {kind}: the JPEG itself, a bilateral filter (d, σ colour; σ space = d) or NL-means (h)",
            "",
            "| quality | JPEG | best bilateral | its PSNR | best NL-means | its PSNR | chosen | gain (dB) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for q, row in j["table"].items():
            bil = max((k for k in row if k.startswith("bilateral")), key=row.get)
            nlm = max((k for k in row if k.startswith("nlm")), key=row.get)
            best = j["best"][q]
            lines.append(
                f"| {q} | {row['jpeg']:.2f} | {bil} | {row[bil]:.2f} | {nlm} | {row[nlm]:.2f} | **{best}** | "
                f"{row[best] - row['jpeg']:+.2f} |"
            )
        lines += [
            "",
            "Chosen: the bold filter per quality; a quality between two fitted ones takes the nearer one's "
            "(the lower on a tie).",
            "",
        ]
        i = res["inpaint"][kind]
        lines += [
            f"## Inpainting, {kind}: cv2.inpaint method and radius, Bernoulli masks",
            "",
            "| keep | " + " | ".join(i["mean"]) + " |",
            "|---|" + "---|" * len(i["mean"]),
        ]
        for k, row in i["table"].items():
            lines.append(f"| {k} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |")
        lines += ["", f"Chosen: **{i['best']}** (best mean {i['mean'][i['best']]:.2f} dB).", ""]
        r = res["sr"][kind]
        lines += [
            f"## Super-resolution, {kind}: cv2.resize after the engine's Lanczos-2 downsampling",
            "",
            "| factor | bicubic | Lanczos |",
            "|---|---|---|",
        ]
        for f, row in r["table"].items():
            lines.append(f"| ×{f} | {row['bicubic']:.2f} | {row['lanczos']:.2f} |")
        lines += ["", f"Chosen: **{r['best']}** (mean {r['mean'][r['best']]:.2f} dB).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser("fit-baselines", __doc__)
    p.add_argument("data", help="the benchmark data folder (holds bsd68/)")
    p.add_argument("--images", nargs="+", default=["0000.png", "0001.png"])
    p.add_argument("--out", default="benchmarks/reports/baselines_fit.md")
    args = p.parse_args(argv)
    images = [load_image(Path(args.data) / "bsd68" / n)[0] for n in args.images]
    start = time.perf_counter()
    res = fit(images)
    seconds = time.perf_counter() - start
    Path(args.out).write_text(markdown(res, args.images, seconds) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
