"""Does pre-training or a transferred model pay when annotations are few? mIoU for 10-100 % of the annotations.

    python benchmarks/label_efficiency.py --out benchmarks/label_efficiency_cpu.json \
        --plot docs/results/label_efficiency_cpu.png
    python benchmarks/label_efficiency.py --table benchmarks/label_efficiency_cpu.json      # the markdown table again

Every run is a real `heritage_seg.pretrain` / `heritage_seg.train` run (the functions the CLI calls) on generated
data, the same encoder (ResNet-18 by default: what learns on a CPU) and the same settings in every arm:

- the **target collection**: `--annotated` generated images (the quick start's mixed profile, 16-class ARTeFACT
  label map, no `_augN` copies), split into folds as `train` splits them; validation always on fold `--fold`
  (unchanged for every fraction and arm: `data.train_fraction` keeps a nested, seeded share of the training
  sources only);
- a **pool of unannotated scans**: `--pool` more images from the same generator (another seed), masks dropped;
- a **source collection** with a different label map: `--source-images` images from another seed, annotated with
  an 11-class map (`SOURCE_MAP`: Dust+Dirt merged into Deposits, Material loss+Puncture into Loss of material,
  Writing renamed Inscription, other raw values), so 8 of the target's 16 classes share a name with it.

For each share of the target's training images (`--fractions`), three starts:
  (a) `random`:      random initialisation (`encoder.weights=null`);
  (b) `pretrained`:  `encoder.weights=<pretrained.pt>` from `heritage_seg.pretrain` on the target's training
                     images without their masks plus the unannotated pool (never the validation fold), random
                     initialisation, `--pretrain-epochs` epochs, the pre-training config's defaults otherwise;
  (c) `transferred`: `init_from=<best.ckpt>` of a model trained (random init) on the source collection.
Every fine-tuning run gets the same number of optimisation steps (`--steps`; fewer images, more epochs), the
default OneCycle schedule, no early stopping, and is validated about `--validations` times. Reported per run:
mIoU over the classes present in the validation fold's truth (`miou_gt`) of the final weights (the last
validation of the training loop, at the model's input size, no selection on the validation fold: the headline)
and of best.ckpt (selected on that fold: optimistic, as every best-checkpoint figure is; from the end-of-fit
report, at each mask's own resolution).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import artefact_labels, compose_cfg, final_scalar, labels_from, result_header
from omegaconf import OmegaConf
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.data.sample import generate_sample
from heritage_seg.tasks.pretrain import pretrain, validation_fold_ids
from heritage_seg.tasks.train import train

ARMS = ("random", "pretrained", "transferred")

# A second collection's own label map: merged and renamed classes, other raw values (docs/guide/label-map.md).
SOURCE_MAP = """\
clean: Clean
ignore_index: 255
ignore_raw: [255]
ignore_color: "#5A0007"
classes:
  - {name: Clean,            raw: 0,  color: "#000000"}
  - {name: Cracks,           raw: 1,  color: "#0000A6"}
  - {name: Scratch,          raw: 2,  color: "#008941"}
  - {name: Hair,             raw: 3,  color: "#006FA6"}
  - {name: Deposits,         raw: 4,  color: "#A30059"}
  - {name: Staining,         raw: 5,  color: "#63FFAC"}
  - {name: Loss of material, raw: 6,  color: "#1CE6FF"}
  - {name: Peel,             raw: 7,  color: "#FF34FF"}
  - {name: Fold,             raw: 8,  color: "#FFA500"}
  - {name: Inscription,      raw: 9,  color: "#7A4900"}
  - {name: Lightleak,        raw: 10, color: "#F6FF1B"}
"""
# ARTeFACT class painted by the generator -> the source map's class it is annotated as
SOURCE_NAME = {
    "Dust": "Deposits",
    "Dirt": "Deposits",
    "Material loss": "Loss of material",
    "Puncture": "Loss of material",
    "Writing": "Inscription",
}


def relabel(folder: Path, source: LabelMap, target: LabelMap) -> None:
    """Rewrite a generated collection's masks (painted in `source`'s raw values) in `target`'s raw values."""
    raw_of = dict(zip(target.names, target.raw_values))
    lut = np.arange(256, dtype=np.uint8)
    for name, raw in zip(source.names, source.raw_values):
        lut[raw] = raw_of[SOURCE_NAME.get(name, name)] if SOURCE_NAME.get(name, name) in raw_of else 255
    for path in sorted((folder / "annotations").glob("*.png")):
        Image.fromarray(lut[np.asarray(Image.open(path))], mode="L").save(path)
    (folder / "sample.json").unlink()  # no longer the generator's own output


def steps_per_epoch(images: int, batch: int) -> int:
    return max(1, images // batch) if images > batch else 1  # the training loader drops a last partial batch


def fine_tune(args, work: Path, root: Path, fraction: float, n_train: int, start: list[str], name: str) -> dict:
    """One `train` run on the target collection with the same step budget whatever the fraction."""
    images = max(1, math.ceil(fraction * n_train))
    epochs = math.ceil(args.steps / steps_per_epoch(images, args.batch_size))
    every = max(1, epochs // args.validations)
    epochs = every * math.ceil(epochs / every)  # the last epoch is validated
    run_dir = work / "runs" / name
    if not (run_dir / "metrics.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
    overrides = [
        "experiment=sample",
        f"encoder={args.encoder}",
        f"data.root={root}",
        "data.sample=null",
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        f"data.train_fraction={fraction}",
        f"fold={args.fold}",
        f"seed={args.seed}",
        f"trainer.max_epochs={epochs}",
        f"+trainer.check_val_every_n_epoch={every}",
        "callbacks.early_stopping=null",
        "callbacks.last_checkpoint=null",
        "callbacks.final_validation_report.tta=false",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        f"run_dir={run_dir}",
        *start,
    ]
    started = time.perf_counter()
    reused = (run_dir / "metrics.json").is_file()  # --work of an interrupted benchmark: finished runs are kept
    if not reused:
        train(compose_cfg("train", overrides))
    seconds = None if reused else round(time.perf_counter() - started, 1)  # None: run by an earlier call
    metrics = json.loads((run_dir / "metrics.json").read_text())
    splits = json.loads((run_dir / "splits.json").read_text())
    return {
        "images": len(splits["train_ids"]),
        "epochs": epochs,
        "final_miou_gt": final_scalar(run_dir, "val/mIoU_gt"),
        "best_ckpt_miou_gt": round(metrics["miou_gt"], 4),
        "best_ckpt_miou": round(metrics["miou"], 4),
        "started_from": metrics.get("started_from"),
        "val_ids": splits["val_ids"],
        "seconds": seconds,
    }


def prepare_data(args, work: Path) -> tuple[Path, Path, Path, list[str]]:
    """The target collection, the folder of scans to pre-train on (its training images + the pool), the source
    collection; and the target's validation ids."""
    artefact = artefact_labels()
    if (work / "scans" / "done").is_file():  # --work of an interrupted benchmark: the data is there
        target, scans, source = work / "target", work / "scans", work / "source"
        return target, scans, source, json.loads((work / "scans" / "done").read_text())
    shutil.rmtree(work / "scans", ignore_errors=True)
    target = generate_sample(
        work / "target", artefact, num_images=args.annotated, num_augmented=0, seed=args.data_seed, profile="mixed"
    )
    val_ids = validation_fold_ids(
        compose_cfg(
            "pretrain",
            [
                f"data.root={target}",
                f"pretrain.exclude_fold={args.fold}",
                f"seed={args.seed}",
                f"encoder={args.encoder}",
            ],
        )
    )
    scans = work / "scans"
    (scans / "collection").mkdir(parents=True)
    for path in sorted((target / "images").glob("*.png")):
        if path.stem not in val_ids:
            shutil.copy2(path, scans / "collection" / path.name)
    if args.pool:
        pool = generate_sample(
            work / "pool", artefact, num_images=args.pool, num_augmented=0, seed=args.data_seed + 1, profile="mixed"
        )
        shutil.copytree(pool / "images", scans / "pool")  # images only: the masks stay unused
    source = generate_sample(
        work / "source",
        artefact,
        num_images=args.source_images,
        num_augmented=0,
        seed=args.data_seed + 2,
        profile="mixed",
    )
    if not (source / "sample.json").is_file() and not (source / "relabelled").is_file():
        raise RuntimeError(f"{source}: half-made source collection; start with a new --work folder")
    if (source / "sample.json").is_file():
        relabel(source, artefact, labels_from(SOURCE_MAP))
        (source / "relabelled").write_text("")
    (scans / "done").write_text(json.dumps(list(val_ids)))
    return target, scans, source, val_ids


def run(args, work: Path) -> dict:
    target, scans, source, val_ids = prepare_data(args, work)
    n_train = args.annotated - len(val_ids)
    out: dict = {"validation_images": len(val_ids), "training_images_at_100_percent": n_train, "results": {}}

    started = time.perf_counter()
    pre_dir = work / "pretrain"
    if not (pre_dir / "pretrained.json").is_file():
        shutil.rmtree(pre_dir, ignore_errors=True)
    weights = (
        pre_dir / "pretrained.pt"
        if (pre_dir / "pretrained.json").is_file()
        else pretrain(
            compose_cfg(
                "pretrain",
                [
                    f"data.root={scans}",
                    f"encoder={args.encoder}",
                    "encoder.weights=null",
                    f"data.image_size={args.image_size}",
                    f"data.batch_size={args.batch_size}",
                    f"seed={args.seed}",
                    f"trainer.max_epochs={args.pretrain_epochs}",
                    "callbacks.progress_bar=null",
                    "+trainer.enable_progress_bar=false",
                    f"run_dir={pre_dir}",
                ],
            )
        )
    )
    record = json.loads((pre_dir / "pretrained.json").read_text())
    out["pretraining"] = {
        k: record[k] for k in ("num_images", "num_val_images", "epochs", "steps", "final_val_loss", "seconds")
    }
    print(f"pre-training: {out['pretraining']}", flush=True)

    conf_dir = work / "user_conf"
    (conf_dir / "labels").mkdir(parents=True, exist_ok=True)
    (conf_dir / "labels" / "source_map.yaml").write_text(SOURCE_MAP)
    source_dir = work / "source_run"
    started = time.perf_counter()
    source_epochs = math.ceil(args.steps / steps_per_epoch(args.source_images * 2 // 3, args.batch_size))
    reused = (source_dir / "metrics.json").is_file()
    if reused:  # --work of an interrupted benchmark: trained already
        source_epochs = int(OmegaConf.load(source_dir / ".hydra" / "config.yaml").trainer.max_epochs)
    else:
        shutil.rmtree(source_dir, ignore_errors=True)
        source_overrides = [
            "experiment=sample",
            f"encoder={args.encoder}",
            f"data.root={source}",
            "data.sample=null",
            "labels=source_map",
            f"hydra.searchpath=[file://{conf_dir}]",
            f"data.image_size={args.image_size}",
            f"data.batch_size={args.batch_size}",
            f"seed={args.seed}",
            f"trainer.max_epochs={source_epochs}",
            f"+trainer.check_val_every_n_epoch={max(1, source_epochs // args.validations)}",
            "callbacks.early_stopping=null",
            "callbacks.last_checkpoint=null",
            "callbacks.final_validation_report.tta=false",
            "~callbacks.progress_bar",
            "+trainer.enable_progress_bar=false",
            f"run_dir={source_dir}",
        ]
        train(compose_cfg("train", source_overrides))
    source_metrics = json.loads((source_dir / "metrics.json").read_text())
    out["source_model"] = {
        "classes": len(source_metrics["classes"]),
        "epochs": source_epochs,
        "best_ckpt_miou_gt": round(source_metrics["miou_gt"], 4),
        "seconds": None if reused else round(time.perf_counter() - started, 1),  # None: trained by an earlier call
    }
    print(f"source model: {out['source_model']}", flush=True)

    starts = {
        "random": ["encoder.weights=null"],
        "pretrained": [f"encoder.weights={weights}"],
        "transferred": [f"init_from={source_dir / 'checkpoints' / 'best.ckpt'}"],
    }
    for fraction in args.fractions:
        for arm in args.arms:
            name = f"{arm}_{round(fraction * 100)}"
            result = fine_tune(args, work, target, fraction, n_train, starts[arm], name)
            if sorted(result.pop("val_ids")) != sorted(val_ids):
                raise RuntimeError(f"{name}: validated on other images than the fixed fold {args.fold}")
            out["results"].setdefault(arm, {})[str(fraction)] = result
            print(f"{name:16s} {result}", flush=True)
    return out


def to_markdown(out: dict) -> str:
    s = out["settings"]
    arms = [a for a in ARMS if a in out["results"]]
    fractions = sorted({float(f) for r in out["results"].values() for f in r})
    head = "| start | " + " | ".join(f"{f:.0%} ({_images(out, f)} images)" for f in fractions) + " |"
    lines = [
        f"mIoU over the truth classes (`miou_gt`) on validation fold {s['fold']} ({out['validation_images']} images), "
        "final weights (best.ckpt in brackets), same "
        f"{s['steps']} steps for every run; {out['device']}",
        "",
        head,
        "|---|" + "---|" * len(fractions),
    ]
    for arm in arms:
        cells = []
        for f in fractions:
            r = out["results"][arm].get(str(f))
            cells.append("-" if r is None else f"{r['final_miou_gt']:.3f} ({r['best_ckpt_miou_gt']:.3f})")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    for arm in arms[1:]:
        cells = []
        for f in fractions:
            a, b = out["results"]["random"].get(str(f)), out["results"][arm].get(str(f))
            cells.append("-" if a is None or b is None else f"{100 * (b['final_miou_gt'] - a['final_miou_gt']):+.1f}")
        lines.append(f"| {arm} − random, points | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _images(out: dict, fraction: float) -> int:
    return next(iter(out["results"].values()))[str(fraction)]["images"]


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for arm in (a for a in ARMS if a in out["results"]):
        runs = out["results"][arm]
        fractions = sorted(runs, key=float)
        ax.plot([100 * float(f) for f in fractions], [runs[f]["final_miou_gt"] for f in fractions], "o-", label=arm)
    ax.set_xscale("log")
    ax.set_xticks([10, 25, 50, 100], ["10 %", "25 %", "50 %", "100 %"])
    ax.set_xlabel("share of the annotated training images")
    ax.set_ylabel(f"mIoU (truth classes), fold {out['settings']['fold']}")
    ax.set_title(f"Label efficiency, generated data, {out['settings']['encoder']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--annotated", type=int, default=60, help="target collection: annotated images (all folds)")
    parser.add_argument("--pool", type=int, default=120, help="unannotated images added to the pre-training")
    parser.add_argument("--source-images", type=int, default=60, help="the other collection (other label map)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps of every training run")
    parser.add_argument("--validations", type=int, default=10, help="about how often a run is validated")
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--fold", type=int, default=0, help="the fixed validation fold (of 3)")
    parser.add_argument("--seed", type=int, default=42, help="folds, subsets, initialisation, batch order")
    parser.add_argument("--data-seed", type=int, default=1, help="the generated collections (+0, +1, +2)")
    parser.add_argument(
        "--work", type=Path, help="keep the runs here (default: a temporary folder); again: finished parts are kept"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="draw the curves into this PNG")
    parser.add_argument("--table", type=Path, help="only print the table (and --plot) of an earlier --out JSON")
    args = parser.parse_args()
    if args.table:
        out = json.loads(args.table.read_text())
    else:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="label_efficiency_") as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            out = {
                **result_header(args),
                **run(args, work),
            }
        out["total_seconds"] = round(time.perf_counter() - started, 1)
        if args.out:
            args.out.write_text(json.dumps(out, indent=1) + "\n")
            print(f"wrote {args.out}")
    print(to_markdown(out))
    if args.plot:
        plot(out, args.plot)


if __name__ == "__main__":
    main()
