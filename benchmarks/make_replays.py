"""Build the app's replays of the paper's experiments (dip_core/replay.py) with the sweep machinery.

    python -m benchmarks replays --data DATA --out assets/replays --jobs 2        # this CPU's scale
    python -m benchmarks replays --data DATA --out assets/replays --preset cuda   # the paper's scale
    python -m benchmarks replays --data DATA --out /tmp/replays --smoke           # a 1-minute check

Every experiment × lane is one sweep run (resumable: ``--work`` keeps finished runs); the committed folder is
then assembled from the runs: per lane its curves, ≤ 40 WebP frames and spectrum maps, and a manifest that
says the scale. ``--preset cpu`` is the app's live CPU network, so a replay shows what a live run would.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from demo.settings import limits_for
from dip_core import sweep
from dip_core.machine import cpu
from dip_core.replay import EXPERIMENTS, FORMAT, LANES, MAX_FRAMES, curves_of, experiment_entry, frame_every, ran_as

from .options import parser

#: The scale of each preset: ``cpu`` is the app's CPU default run (demo/settings.py: its network, image size and
#: steps), so a replay shows what a live run would; ``cuda`` the paper's setting (docs/method.md §7).
_APP = limits_for("cpu")
SCALES = {
    "cpu": dict(max_side=_APP.max_side, width=_APP.width, lr=_APP.lr, iterations=_APP.iterations, every=_APP.every),
    "cuda": dict(max_side=512, width=128, lr=0.001, iterations=10_000, every=50),
    "smoke": dict(max_side=48, width=8, lr=0.007, iterations=40, every=10),
}


def specs_for(data: Path, scale: dict, experiments, lanes, preset: str, kept: dict | None = None) -> list[tuple]:
    """(experiment, lane, the lane it runs as or None, RunSpec) for every pair (``kept``: each experiment's lanes
    already in the folder); the spec's variant names both, so keys never clash."""
    out = []
    for exp in experiments:
        there = [x for x in LANES if x in lanes or x.name in (kept or {}).get(exp.name, ())]
        for lane in lanes:
            overrides = {k: scale[k] for k in ("width", "lr", "iterations", "every")}
            overrides["measure_every_step"] = False  # replays need snapshots only (and run faster without)
            spec = sweep.RunSpec(
                exp.task,
                str(data / exp.image),
                lane.lipschitz,
                lane.upsample,
                lane.gaussian_sigma,
                seed=0,
                level=exp.level,
                max_side=scale["max_side"],
                preset=preset,
                overrides=overrides,
                variant=f"{exp.name}.{lane.name}",
                mask=str(data / exp.mask) if exp.mask else None,
                frames=MAX_FRAMES,
            )
            ran = ran_as(lane, sweep.task_of(spec), there) if lane.lipschitz == "auto" else (lane, None)
            out.append((exp, *ran, spec))
    return out


def assemble(
    work: Path, out: Path, triples: list[tuple], scale: dict, preset: str, command: str, threads: int, old: dict
) -> dict:
    """Copy the runs' frames into the replay layout and write the manifest (into ``old``, the folder's manifest
    when lanes are added, each with its machine); returns it."""
    rows = {r["key"]: r for r in sweep.load_rows(work)}
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {e["name"]: e for e in old.get("experiments", [])}
    for exp, lane, same, spec in triples:
        if exp.name in entries:  # a lane built again replaces its entry (sorted into LANES' order below)
            entries[exp.name]["lanes"] = [x for x in entries[exp.name]["lanes"] if x["name"] != lane.name]
        if same is not None:  # auto runs a fixed λ whose lane is here: that run, not a copy
            entries[exp.name]["lanes"].append({**asdict(lane), "same_as": same})
            continue
        src, row = work / spec.key, rows[spec.key]
        dst = out / exp.name / lane.name
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in sorted(src.glob("*.webp")):
            if f.stem.isdigit():
                shutil.copy(f, dst / f.name)
            else:
                shutil.copy(f, out / exp.name / f.name)  # clean, observed, baseline: the same for every lane
        shutil.copy(src / "spectrum.npz", dst / "spectrum.npz")
        records = [json.loads(line) for line in (work / f"{spec.key}.jsonl").read_text().splitlines()]
        (dst / "curves.json").write_text(json.dumps(curves_of(records), separators=(",", ":")))
        if exp.name not in entries:
            base = json.loads((src / "baseline.json").read_text())
            entries[exp.name] = experiment_entry(exp, [], {"baseline": base, "seconds": {}})
        entry = entries[exp.name]
        entry["lanes"].append(
            asdict(lane) | ({"machine": str(cpu()), "date": time.strftime("%Y-%m-%d")} if old else {})
        )
        entry["seconds"][lane.name] = round(row["seconds"], 1)
    for entry in entries.values():
        entry["lanes"].sort(key=lambda x: [lane.name for lane in LANES].index(x["name"]))
    manifest = old or {
        "format": FORMAT,
        "scale": {
            "preset": preset,
            **scale,
            "seed": 0,
            "frame_every": frame_every(scale["iterations"], scale["every"]),
            "machine": str(cpu()),
            "threads_per_run": threads,
            "device": rows[triples[0][3].key]["device"],
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
        },
        "command": command,
    }
    manifest["experiments"] = list(entries.values())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = parser("replays", __doc__)
    p.add_argument("--data", required=True, help="the benchmark image folder (denoising/, inpainting/, ...)")
    p.add_argument("--out", default="assets/replays", help="the replay folder the app reads")
    p.add_argument("--preset", default="cpu", choices=("cpu", "cuda"), help="cpu: this CPU's scale; cuda: the paper's")
    p.add_argument("--smoke", action="store_true", help="tiny images, 40 steps, two experiments and two lanes")
    p.add_argument("--work", default=None, help="the sweep folder (resumable); default build/replays-<preset>")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (local processes, one thread each)")
    p.add_argument("--experiments", nargs="+", default=None, help="names (default: all)")
    p.add_argument("--lanes", nargs="+", default=None, help="only these lanes, added to --out's manifest")
    args = p.parse_args(argv)
    scale = SCALES["smoke" if args.smoke else args.preset]
    old = json.loads((Path(args.out) / "manifest.json").read_text()) if args.lanes else {}
    scale = {k: old["scale"][k] for k in scale} if old else scale  # lanes added to a replay folder: at its scale
    kept = {e["name"]: [x["name"] for x in e["lanes"]] for e in old.get("experiments", [])}
    experiments = [e for e in EXPERIMENTS if e.name in (args.experiments or kept or [e.name])]  # added: the folder's
    lanes = [x for x in LANES if args.lanes is None or x.name in args.lanes]
    if args.smoke and args.lanes is None:
        experiments, lanes = experiments[:2] if args.experiments is None else experiments, lanes[:3:2]
    data = Path(args.data)
    for exp in experiments:
        for path in (exp.image, exp.mask):
            if path and not (data / path).is_file():
                sys.exit(f"error: {data / path}: not found (--data is the benchmark image folder)")
    work = Path(args.work or f"build/replays-{'smoke' if args.smoke else args.preset}")
    triples = specs_for(data, scale, experiments, lanes, args.preset, kept)
    start = time.perf_counter()
    sweep.execute(
        [t[3] for t in triples if t[2] is None],
        work,
        use_ray=False,
        jobs=args.jobs,
        cpus_per_run=1 if args.jobs > 1 else 0,
        on_row=lambda r: print(
            f"done {r['key']}: final {r['final_psnr']:.2f} dB, {r['seconds']:.0f} s", file=sys.stderr
        ),
    )
    given = list(argv if argv is not None else sys.argv[1:])
    for i, arg in enumerate(given[:-1]):  # the manifest is shown in the app: the data folder is this machine's,
        if arg == "--data":  # not the visitor's, so it reads DATA there (tests/test_docs.py checks)
            given[i + 1] = "DATA"
    given = ["--data=DATA" if a.startswith("--data=") else a for a in given]
    command = "python -m benchmarks replays " + " ".join(given)
    threads = 1 if args.jobs > 1 else torch.get_num_threads()
    manifest = assemble(work, Path(args.out), triples, scale, args.preset, command, threads, old)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    took = f"{len(triples)} runs in {time.perf_counter() - start:.0f} s; {args.out}: {size / 1e6:.1f} MB"
    print(f"{took}, {len(manifest['experiments'])} experiments", file=sys.stderr)
    return 0
