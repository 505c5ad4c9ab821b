"""The plan's ablation rows on generated data: "+Multi-Task" (heads=multitask) and progressive resolution, each
against its baseline on the three folds, through the presets users run (issue 28).

    python benchmarks/ablations.py --out benchmarks/ablations_cpu.json

Each row is one real sweep, `python -m heritage_seg.train -m ablation=<name> experiment=sample …` (the quick
start's generated data, ResNet-18 U-Net from random initialisation, 128 px), with `--epochs` epochs and no early
stopping so both arms train the same schedule, then `python -m heritage_seg.aggregate` on the sweep. Progressive
resolution here is the CPU-sized analogue of the preset's 256 -> 384 px: `--progressive` (default 64 px for 3/8 of
the epochs, then 128 px) against a fixed 128 px, validation at 128 px in both. Recorded per row: each group's
mIoU over the truth classes (mean ± std over folds, each fold), damage-vs-clean IoU, coarse mIoU, the paired
per-fold differences to the baseline, and the sweep's seconds on this machine. Generated damage says little about
real damage: these rows test the machinery and show the size of fold-to-fold noise, not what ARTeFACT would show.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, machine


def run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}; see {log}")
    return time.perf_counter() - start


def row(summary: dict) -> dict:
    """What the results page shows of one aggregate."""
    out = {"baseline": summary["groups"][summary["baseline"]]["label"] if summary["baseline"] else None, "groups": {}}
    for group in summary["groups"].values():
        plain = group["no_tta"]
        out["groups"][group["label"]] = {
            "miou_gt": plain["miou_gt"],
            "binary_iou": (plain.get("binary") or {}).get("iou"),
            "coarse_miou_gt": (plain.get("coarse") or {}).get("miou_gt"),
            "vs_baseline_miou_gt": group.get("vs_baseline_miou_gt"),
            "vs_baseline_binary_iou": group.get("vs_baseline_binary_iou"),
            "vs_baseline_coarse_miou_gt": group.get("vs_baseline_coarse_miou_gt"),
            "runs": group["runs"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--progressive", default=None, help="stages, e.g. [[64,15],[128,25]] (default: 3/8 at 64 px)")
    parser.add_argument("--rows", nargs="+", default=["multitask", "progressive"], choices=["multitask", "progressive"])
    parser.add_argument("--work", type=Path, help="keep the sweeps here (default: a temporary folder)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    first = round(args.epochs * 3 / 8)
    stages = args.progressive or f"[[64,{first}],[128,{args.epochs - first}]]"
    with tempfile.TemporaryDirectory(prefix="ablations_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        common = [
            "experiment=sample",
            f"data.root={work / 'sample'}",
            "data.image_size=128",
            f"trainer.max_epochs={args.epochs}",
            "callbacks.early_stopping=null",
            "~callbacks.progress_bar",
            "+trainer.enable_progress_bar=false",
        ]
        extra = {"multitask": [], "progressive": [f"hydra.sweeper.params={{data.progressive:'null,{stages}'}}"]}
        out = {
            "device": machine(),
            "torch": torch.__version__,
            "settings": {"epochs": args.epochs, "progressive": stages, "common": common},
            "rows": {},
        }
        for name in args.rows:
            sweep = work / name
            seconds = run(
                [
                    sys.executable,
                    "-m",
                    "heritage_seg.train",
                    "-m",
                    f"ablation={name}",
                    *common,
                    *extra[name],
                    f"hydra.sweep.dir={sweep}",
                ],
                work / f"{name}.log",
            )
            run([sys.executable, "-m", "heritage_seg.aggregate", f"runs={sweep}"], work / f"{name}_aggregate.log")
            summary = json.loads((sweep / "cv_results.json").read_text())
            out["rows"][name] = {"sweep_seconds": round(seconds, 1), **row(summary)}
            print((sweep / "cv_results.md").read_text(), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
