"""What does self-supervised pre-training cost per 1,000 images? One real `heritage_seg.pretrain` run per encoder.

    python benchmarks/pretrain_cost.py --out benchmarks/pretrain_cost_cpu.json
    python benchmarks/pretrain_cost.py --images 512 --epochs 3 --batch-size 32 --out benchmarks/pretrain_cost_h200.json

Each run pre-trains from random weights on `--images` generated scans (the quick start's generator, masks unused)
at `--image-size` for `--epochs` epochs, with the pre-training config's defaults otherwise (masked-image
modelling, bf16 on a GPU that has it, channels-last with CUDA). Reported per encoder: the seconds of the whole fit
(`pretrained.json`: training steps, the held-out loss every epoch, the pictures, the checkpoint) and the same per
1,000 images through a training step (steps x batch size): multiply by the size of a collection and the epochs
to plan a job. The first epoch
carries the start-up cost, so the per-image figure is a little pessimistic for long runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import artefact_labels, compose_cfg, result_header

from heritage_seg.data.sample import generate_sample
from heritage_seg.tasks.pretrain import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["convnext", "mit_b3", "maxvit"])
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=40, help="generated scans to pre-train on")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    labels = artefact_labels()
    results = {}
    with tempfile.TemporaryDirectory(prefix="pretrain_cost_") as tmp:
        scans = generate_sample(Path(tmp) / "scans", labels, num_images=args.images, num_augmented=0, seed=7)
        for encoder in args.encoders:
            run_dir = Path(tmp) / encoder
            overrides = [
                f"data.root={scans}",
                f"encoder={encoder}",
                "encoder.weights=null",
                f"data.image_size={args.image_size}",
                f"data.batch_size={args.batch_size}",
                f"trainer.max_epochs={args.epochs}",
                "pretrain.val_images=4",
                f"pretrain.pictures_every_n_epochs={args.epochs}",
                "callbacks.progress_bar=null",
                "+trainer.enable_progress_bar=false",
                f"run_dir={run_dir}",
            ]
            cfg = compose_cfg("pretrain", overrides)
            started = time.perf_counter()
            pretrain(cfg)
            wall = time.perf_counter() - started
            record = json.loads((run_dir / "pretrained.json").read_text())
            seen = record["steps"] * args.batch_size  # images through a training step (a last partial batch is dropped)
            results[encoder] = {
                "images": record["num_images"],
                "held_out": record["num_val_images"],
                "epochs": record["epochs"],
                "steps": record["steps"],
                "fit_seconds": record["seconds"],
                "wall_seconds": round(wall, 1),
                "seconds_per_1000_images_per_epoch": round(1000 * record["seconds"] / seen, 1),
            }
            print(encoder, results[encoder], flush=True)
    out = {
        **result_header(args),
        "results": results,
    }
    print("| encoder | image size | batch | s per 1,000 images per epoch |\n|---|---|---|---|")
    for encoder, r in results.items():
        print(f"| {encoder} | {args.image_size} | {args.batch_size} | {r['seconds_per_1000_images_per_epoch']} |")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
