"""Project the README's sweep (3 encoders x 3 folds x 50 epochs) from a few real epochs per encoder.

    python benchmarks/sweep_time.py --out benchmarks/sweep_time_h100.json     # GPU: 418 images at 384 px, batch 8
    python benchmarks/sweep_time.py --batch-size 96 --out …                   # the seed's batch size
    python benchmarks/sweep_time.py --encoders convnext --images 16 --image-size 64 --epochs 3 --batch-size 4  # CPU

For each encoder it runs the real `python -m heritage_seg.train` in a subprocess, as a user would, on generated
ARTeFACT-sized data (default 418 images, fold 0 of 3, early stopping off) for --epochs epochs, and reads from
the run's timestamped log lines and files:
  - first epoch including start-up (process start -> the "epoch 1/N" line: imports, data, model, first epoch),
  - the steady epoch time (median of epochs 2..E, training + validation),
  - the end-of-fit report (last epoch line -> last report line: best checkpoint without and with TTA), with the
    device and precision it ran on and its own evaluation seconds (metrics*.json),
  - shutdown (last report line -> process exit).
One run is projected as first + (max_epochs - 1) x steady + report + shutdown; the sweep as folds x the sum
over encoders. Early stopping usually ends runs sooner, so this is the figure at max_epochs (an upper bound).
The data set is generated (or reused from --root) and cached once before the timed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import OmegaConf

from heritage_seg.core.files import write_json_atomic
from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import build_cache
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.readers import open_reader
from heritage_seg.data.sample import generate_sample

REPO = Path(__file__).resolve().parents[1]

LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[[^\]]*\]\[\w+\] - (.*)$")
EPOCH = re.compile(r"^epoch (\d+)/(\d+)\b")
REPORT = "best checkpoint on the validation fold"


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def timed_lines(log: str) -> list[tuple[float, str]]:
    """(time, message) of every log line Hydra's default format wrote ([date time,ms][logger][LEVEL] - message)."""
    out = []
    for line in log.splitlines():
        match = LINE.match(line.strip())
        if match:
            out.append((_stamp(match.group(1)), match.group(2)))
    return out


def run_one(encoder: str, args, root: Path, cache: Path, run_dir: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "heritage_seg.train",
        f"encoder={encoder}",
        "experiment=sample",
        f"data.root={root}",
        f"data.cache_dir={cache}",
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        f"data.sample.num_images={args.images}",
        f"trainer.max_epochs={args.epochs}",
        "fold=0",
        "callbacks.early_stopping=null",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.time()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    end = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{encoder}: training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = timed_lines((run_dir / "train.log").read_text())
    epochs = [(t, int(EPOCH.match(m).group(1))) for t, m in lines if EPOCH.match(m)]
    reports = [t for t, m in lines if m.startswith(REPORT)]
    if len(epochs) != args.epochs or not reports:
        raise RuntimeError(f"{encoder}: expected {args.epochs} epoch lines and report lines in {run_dir}/train.log")
    times = [t for t, _ in epochs]
    steady = statistics.median(b - a for a, b in zip(times, times[1:]))
    metrics = {name: json.loads((run_dir / name).read_text()) for name in ("metrics.json", "metrics_tta.json")}
    result = {
        "encoder": encoder,
        "epochs_run": args.epochs,
        "first_epoch_incl_startup_s": round(times[0] - start, 2),
        "steady_epoch_s": round(steady, 3),
        "report_wall_s": round(reports[-1] - times[-1], 2),
        "report_eval_s": {
            "no_tta": metrics["metrics.json"].get("seconds"),
            "tta": metrics["metrics_tta.json"].get("seconds"),
        },
        "report_device": metrics["metrics.json"].get("device"),
        "report_precision": metrics["metrics.json"].get("precision"),
        "shutdown_s": round(end - reports[-1], 2),
        "run_wall_s": round(end - start, 2),
    }
    one_run = (
        result["first_epoch_incl_startup_s"]
        + (args.max_epochs - 1) * steady
        + result["report_wall_s"]
        + result["shutdown_s"]
    )
    result["projected_run_min"] = round(one_run / 60, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["convnext", "mit_b3", "maxvit"])
    parser.add_argument("--images", type=int, default=418, help="generated images (ARTeFACT has 418)")
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4, help="epochs actually run per encoder (>= 3)")
    parser.add_argument("--max-epochs", type=int, default=50, help="epochs per run in the projected sweep")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="data folder, generated once and reused (e.g. the "
        "one train_throughput.py --root made; default: a temporary one)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be >= 3 (the steady epoch time is taken from epochs 2..E)")

    labels = LabelMap.from_config(OmegaConf.load(REPO / "conf" / "labels" / "artefact.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root, cache = (args.root.expanduser().resolve() if args.root else work / "sample"), work / "cache"
        generate_sample(root, labels, num_images=args.images)  # once, before any timed run
        build_cache(open_reader(root), Protocol("squash", args.image_size), labels, cache)
        results, failed = [], {}
        print(f"{'encoder':<10} {'1st epoch':>9} {'epoch':>7} {'report':>7} {'report on':<26} {'run (proj.)':>11}")
        for encoder in args.encoders:
            try:
                r = run_one(encoder, args, root, cache, work / f"run_{encoder}")
            except RuntimeError as err:  # one encoder's failure must not cost the others' figures
                failed[encoder] = str(err)
                print(f"{encoder:<10} FAILED: {err}", flush=True)
                continue
            results.append(r)
            print(
                f"{encoder:<10} {r['first_epoch_incl_startup_s']:>8.1f}s {r['steady_epoch_s']:>6.2f}s "
                f"{r['report_wall_s']:>6.1f}s {str(r['report_device']) + ' ' + str(r['report_precision']):<26} "
                f"{r['projected_run_min']:>9.1f} min",
                flush=True,
            )
            save(args, results, failed)  # after each encoder: a run cut short keeps what it measured
    sweep = save(args, results, failed)
    if sweep is not None:
        print(
            f"projected sweep: {len(args.encoders)} encoders x {args.folds} folds x {args.max_epochs} epochs "
            f"= {sweep} min on one device, one run after another"
        )
    if failed:
        sys.exit(f"sweep_time: {', '.join(failed)} failed; no sweep projected")


def save(args, results: list[dict], failed: dict) -> float | None:
    """The JSON so far; the sweep is projected only once every encoder has run."""
    done = len(results) == len(args.encoders)
    sweep = round(args.folds * sum(r["projected_run_min"] for r in results), 1) if done else None
    payload = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else (platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
        "failed": failed,
        "projected_sweep_min": sweep,
    }
    if args.out:
        write_json_atomic(args.out, payload)
    return sweep


if __name__ == "__main__":
    main()
