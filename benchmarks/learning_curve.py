"""How fast does a thin, rare damage class get learned? Per-epoch validation IoU for several setups, in ONE run.

    python benchmarks/learning_curve.py --out benchmarks/learning_curve_thin_cpu.json
    python benchmarks/learning_curve.py --data mixed --epochs 40 --out benchmarks/learning_curve_mixed_cpu.json

Every setup is a real `heritage_seg.train` run (the same function the CLI calls: datamodule, module, loss,
OneCycle, callbacks, best.ckpt, end-of-fit evaluation) on generated data, from random initialisation:
  --data thin  : `data.sample.profile=thin`: one thin damage class (2-3 px jagged lines, ~1 % of the pixels) on
                 textured backgrounds with depicted strokes that are not damage; every other class absent.
                 Setups: the 16-class ARTeFACT map, the same with each loss option, and a 2-class label map
                 (Clean + Cracks, a user's own map passed as `--config-dir`-style search path + `labels=`).
  --data mixed : the quick start's sample data (most classes present): does an option hurt the 16-class case?
Per epoch it records the IoU of `--class` (and val/mIoU_gt, val/mIoU) from the run's TensorBoard events, and
the IoU of that class in the best checkpoint's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import compose_cfg, result_header
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heritage_seg.tasks.train import train

TWO_CLASS_MAP = """\
# A user's own label map: only the undamaged class and cracks, with ARTeFACT's raw values and colours.
clean: Clean
ignore_index: 255
ignore_raw: [255]
ignore_color: "#5A0007"
classes:
  - {name: Clean,  raw: 0, color: "#000000"}
  - {name: Cracks, raw: 9, color: "#0000A6"}
"""

# Every option spelled out, so a setup means the same whatever the defaults are.
SEED_LOSS = "16 classes, loss.dice_classes=all (the seed's loss)"
SETUPS = {
    "thin": {
        SEED_LOSS: ["loss.dice_classes=all"],
        "16 classes, loss.dice_classes=present": ["loss.dice_classes=present"],
        "16 classes, loss.absent_class_weight=zero": ["loss.dice_classes=all", "loss.absent_class_weight=zero"],
        "2 classes (own label map)": ["labels=cracks_only", "loss.dice_classes=all"],
    },
    "mixed": {
        SEED_LOSS: ["loss.dice_classes=all"],
        "16 classes, loss.dice_classes=present": ["loss.dice_classes=present"],
        "16 classes, loss.absent_class_weight=zero": ["loss.dice_classes=all", "loss.absent_class_weight=zero"],
    },
}


def scalars(run_dir: Path, tag: str) -> list[float | None]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [round(e.value, 4) for e in events.Scalars(tag)]


def run_setup(name: str, extra: list[str], args, work: Path, fold: int) -> dict:
    conf_dir = work / "user_conf"
    (conf_dir / "labels").mkdir(parents=True, exist_ok=True)
    (conf_dir / "labels" / "cracks_only.yaml").write_text(TWO_CLASS_MAP)
    own_map = any(o.startswith("labels=") for o in extra)
    data = [f"data.sample.profile={args.data}"]
    if args.data == "thin":
        data += [
            f"data.sample.num_images={args.num_images}",
            "data.sample.num_augmented=0",
            f"data.sample.image_px={args.image_size}",
        ]
    run_dir = work / f"{''.join(c if c.isalnum() else '_' for c in name)}_fold{fold}"
    overrides = [
        "experiment=sample",
        f"data.root={work / ('data_2class' if own_map else 'data_16class')}",
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        f"trainer.max_epochs={args.epochs}",
        f"seed={args.seed}",
        f"encoder={args.encoder}",
        f"fold={fold}",
        "callbacks.early_stopping=null",
        "callbacks.final_validation_report.tta=false",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        f"run_dir={run_dir}",
        f"hydra.searchpath=[file://{conf_dir}]",
        *data,
        *extra,
    ]
    cfg = compose_cfg("train", overrides)
    start = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    splits = json.loads((run_dir / "splits.json").read_text())
    return {
        "overrides": extra,
        "classes": len(metrics["classes"]),
        f"val_iou_{args.cls}": scalars(run_dir, f"val/IoU/{args.cls}"),
        "val_miou_gt": scalars(run_dir, "val/mIoU_gt"),
        "val_miou": scalars(run_dir, "val/mIoU"),
        f"best_ckpt_iou_{args.cls}": metrics["per_class"][args.cls]["iou"],
        "best_ckpt_miou_gt": metrics["miou_gt"],
        "best_ckpt_miou": metrics["miou"],
        "val_ids": splits["val_ids"],
        "seconds": round(seconds, 1),
    }


def to_markdown(out: dict, every: int = 1) -> str:
    """Per-epoch IoU of the followed class (every `every` epochs) and the best checkpoint's figures."""
    cls = out["settings"]["cls"]
    lines = []
    for fold in out["settings"]["folds"]:
        runs = {name: r[f"fold{fold}"] for name, r in out["results"].items() if f"fold{fold}" in r}
        epochs = max(len(r[f"val_iou_{cls}"]) for r in runs.values())
        shown = [e for e in range(1, epochs + 1) if e == 1 or e % every == 0 or e == epochs]
        lines += [
            f"fold {fold}: val IoU of {cls} per epoch, then the best checkpoint (selected on val/mIoU_gt)",
            "",
            "| setup | " + " | ".join(str(e) for e in shown) + f" | best.ckpt {cls} | mIoU_gt | mIoU (strict) |",
            "|---|" + "---|" * (len(shown) + 3),
        ]
        for name, r in runs.items():
            curve = r[f"val_iou_{cls}"]
            cells = [f"{curve[e - 1]:.3f}" if e - 1 < len(curve) else "-" for e in shown]
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {r[f'best_ckpt_iou_{cls}']:.3f} | "
                f"{r['best_ckpt_miou_gt']:.3f} | {r['best_ckpt_miou']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(SETUPS), default="thin")
    parser.add_argument("--setups", nargs="*", help="names of setups to run (default: all for --data)")
    parser.add_argument("--encoder", default="convnext")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--num-images", type=int, default=96, help="thin data: images (2/3 train, 1/3 val)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, nargs="+", default=[0], help="validation folds (of 3) to run")
    parser.add_argument("--cls", default="Cracks", help="the class whose IoU is followed")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--table", type=Path, help="only print the markdown table of an earlier --out JSON")
    parser.add_argument("--every", type=int, default=1, help="table: show every N-th epoch")
    args = parser.parse_args()
    if args.table:
        print(to_markdown(json.loads(args.table.read_text()), args.every))
        return

    setups = SETUPS[args.data]
    chosen = args.setups or list(setups)
    results = {}
    with tempfile.TemporaryDirectory(prefix="learning_curve_") as tmp:
        for fold in args.folds:
            for name in chosen:
                r = results.setdefault(name, {})[f"fold{fold}"] = run_setup(name, setups[name], args, Path(tmp), fold)
                print(
                    f"fold {fold} {name:45s} {args.cls} IoU per epoch: {r[f'val_iou_{args.cls}']}  "
                    f"best.ckpt {args.cls} {r[f'best_ckpt_iou_{args.cls}']}  mIoU_gt {r['best_ckpt_miou_gt']}  "
                    f"mIoU {r['best_ckpt_miou']}  ({r['seconds']} s)",
                    flush=True,
                )
    val_sets = {fold: {json.dumps(r[f"fold{fold}"].pop("val_ids")) for r in results.values()} for fold in args.folds}
    out = {
        **result_header(args),
        "same_validation_images_for_every_setup": all(len(v) == 1 for v in val_sets.values()),
        "results": results,
    }
    print(to_markdown(out, args.every))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
