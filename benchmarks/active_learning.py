"""Which scans to annotate next: does `select`'s rule beat random choice and uncertainty alone? Rounds of annotation.

    python benchmarks/active_learning.py --out benchmarks/active_learning_cpu.json \
        --plot docs/results/active_learning_cpu.png
    python benchmarks/active_learning.py --table benchmarks/active_learning_cpu.json

On generated data (the quick start's mixed profile, 16-class ARTeFACT map): a fixed validation set and a pool of
scans whose masks are hidden until chosen. Every seed starts from the same `--initial` annotated scans for all
three strategies; each round adds `--k` scans chosen by
  (a) `random`:      a seeded random choice from the pool;
  (b) `uncertainty`: `select diversity=0` (the scans whose TTA views disagree most);
  (c) `rule`:        `select` as it ships (uncertainty x distance to the annotated and chosen scans);
with the previous round's model, and trains a new model from random initialisation on all scans annotated so far
(a real `train` run: ResNet-18, 128 px, the same `--steps` optimisation steps every round, no early stopping).
The validation set is held out by leave-one-group-out on metadata.csv's material column (`split=material`), so it
is the same images in every round, strategy and seed. Reported: mIoU over the truth classes of each round's final
weights (the training loop's last validation); and, per seed and strategy, how many annotations the strategy
needed to reach random selection's final mIoU (target: the rule with at most 70 % of random's).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import artefact_labels, compose_cfg, final_scalar, result_header

from heritage_seg.data.sample import generate_sample
from heritage_seg.tasks.select import select
from heritage_seg.tasks.train import train

STRATEGIES = ("random", "uncertainty", "rule")
VALIDATION, ANNOTATED = "validation", "annotated"  # the two material groups: fold 1 is the validation set


def make_round_folder(folder: Path, collection: Path, annotated: list[str], validation: list[str]) -> None:
    """An ARTeFACT-format folder with the annotated scans and the validation set, told apart by material."""
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True)
        for sample_id in annotated + validation:
            shutil.copy(collection / sub / f"{sample_id}.png", folder / sub / f"{sample_id}.png")
    (folder / "validation.json").write_text(json.dumps(sorted(validation)))
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "material", "content"])
        writer.writeheader()
        for sample_id in annotated:
            writer.writerow({"id": sample_id, "material": ANNOTATED, "content": "unknown"})
        for sample_id in validation:
            writer.writerow({"id": sample_id, "material": VALIDATION, "content": "unknown"})


def final_miou(run_dir: Path) -> float:
    value = final_scalar(run_dir, "val/mIoU_gt")
    if value is None:
        raise RuntimeError(f"{run_dir}: no val/mIoU_gt was logged")
    return value


def train_round(args, folder: Path, run_dir: Path, images: int, seed: int) -> float:
    per_epoch = max(1, images // args.batch_size) if images > args.batch_size else 1
    epochs = math.ceil(args.steps / per_epoch)
    every = max(1, epochs // 5)
    epochs = every * math.ceil(epochs / every)
    train(
        compose_cfg(
            "train",
            [
                "experiment=sample",
                f"encoder={args.encoder}",
                f"data.root={folder}",
                "data.sample=null",
                f"data.image_size={args.image_size}",
                f"data.batch_size={args.batch_size}",
                "split=material",
                "fold=1",  # the validation group (groups sorted: annotated, validation)
                f"seed={seed}",
                f"trainer.max_epochs={epochs}",
                f"+trainer.check_val_every_n_epoch={every}",
                "callbacks.early_stopping=null",
                "callbacks.last_checkpoint=null",
                "callbacks.final_validation_report=null",
                "~callbacks.progress_bar",
                "+trainer.enable_progress_bar=false",
                f"run_dir={run_dir}",
            ],
        )
    )
    validated = sorted(json.loads((run_dir / "splits.json").read_text())["val_ids"])
    if validated != sorted(json.loads((folder / "validation.json").read_text())):
        raise RuntimeError(f"{run_dir}: validated on other images than the fixed validation set")
    return final_miou(run_dir)


DONE = "round.json"  # a finished round's record: `--work` again resumes after the last one


def trained(
    args, place: Path, collection: Path, annotated: list[str], validation: list[str], seed: int, chosen=None
) -> dict:
    """Train one round in `place` (its data folder and run), or read the record of a finished one."""
    if (place / DONE).exists():
        return json.loads((place / DONE).read_text())
    shutil.rmtree(place, ignore_errors=True)  # an interrupted round starts again
    make_round_folder(place / "data", collection, annotated, validation)
    record = {
        "chosen": chosen,
        "miou_gt": train_round(args, place / "data", place / "run", len(annotated), seed),
    }
    (place / DONE).write_text(json.dumps(record))
    return record


def choose(
    strategy: str, args, work: Path, model: Path, folder: Path, pool: list[str], collection: Path, rng
) -> list[str]:
    if strategy == "random":
        return [pool[i] for i in sorted(rng.choice(len(pool), size=min(args.k, len(pool)), replace=False))]
    scans = work / "pool_now"
    shutil.rmtree(scans, ignore_errors=True)
    scans.mkdir()
    for sample_id in pool:  # images only: their masks stay hidden until chosen
        shutil.copy(collection / "images" / f"{sample_id}.png", scans / f"{sample_id}.png")
    out = work / "select_now"
    shutil.rmtree(out, ignore_errors=True)
    result = select(
        compose_cfg(
            "select",
            [
                f"ckpt={model}",
                f"input={scans}",
                f"budget={args.k}",
                f"annotated={folder}",
                f"diversity={0.0 if strategy == 'uncertainty' else 1.0}",
                f"output={out}",
            ],
        ),
        out,
    )
    return [Path(name).stem for name in result["chosen"]]


def run_seed(args, work: Path, seed: int) -> dict:
    collection = generate_sample(
        work / f"collection_{seed}",
        artefact_labels(),
        num_images=args.images,
        num_augmented=0,
        seed=seed,
        profile="mixed",
    )
    ids = sorted(p.stem for p in (collection / "images").glob("*.png"))
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    validation = sorted(order[: args.validation])
    initial = sorted(order[args.validation : args.validation + args.initial])
    out: dict = {"validation": len(validation), "strategies": {}}
    first_folder, first_run = work / f"s{seed}_initial" / "data", work / f"s{seed}_initial" / "run"
    first = trained(args, work / f"s{seed}_initial", collection, initial, validation, seed)["miou_gt"]
    print(f"seed {seed}: {len(initial)} annotated -> mIoU {first}", flush=True)
    for strategy in args.strategies:
        annotated, model, folder = list(initial), first_run / "checkpoints" / "best.ckpt", first_folder
        curve = [{"annotated": len(annotated), "miou_gt": first}]
        strategy_rng = np.random.default_rng([seed, 1])
        for round_ in range(1, args.rounds + 1):
            pool = sorted(set(ids) - set(validation) - set(annotated))
            place = work / f"s{seed}_{strategy}_{round_}"
            earlier = json.loads((place / DONE).read_text()) if (place / DONE).exists() else None
            if earlier is None or strategy == "random":  # random is cheap and must advance its generator
                chosen = choose(strategy, args, work, model, folder, pool, collection, strategy_rng)
                if earlier is not None and chosen != earlier["chosen"]:
                    raise RuntimeError(f"{place}: a resumed random round chose other scans than before")
            else:
                chosen = earlier["chosen"]
            annotated = sorted(annotated + chosen)
            miou = trained(args, place, collection, annotated, validation, seed, chosen)["miou_gt"]
            folder, model = place / "data", place / "run" / "checkpoints" / "best.ckpt"
            curve.append({"annotated": len(annotated), "miou_gt": miou, "chosen": chosen})
            print(f"seed {seed} {strategy:11s} round {round_}: {len(annotated)} annotated -> mIoU {miou}", flush=True)
        out["strategies"][strategy] = curve
    return out


def needed(curve: list[dict], level: float) -> int | None:
    """Annotations at the first round whose mIoU reaches `level` (None: never)."""
    return next((point["annotated"] for point in curve if point["miou_gt"] >= level), None)


def mean_curves(out: dict) -> dict[str, list[dict]]:
    """Each strategy's curve averaged over the seeds (the rounds have the same sizes in every seed)."""
    curves = {}
    for strategy in STRATEGIES:
        runs = [r["strategies"][strategy] for r in out["seeds"].values() if strategy in r["strategies"]]
        if runs:
            curves[strategy] = [
                {
                    "annotated": points[0]["annotated"],
                    "miou_gt": round(float(np.mean([p["miou_gt"] for p in points])), 4),
                }
                for points in zip(*runs)
            ]
    return curves


def summarise(out: dict) -> dict:
    """Per seed, and for the curves averaged over the seeds (`mean`): annotations each strategy needed to reach
    random's final mIoU, and its share of random's."""
    summary = {}
    seeds = {**out["seeds"], "mean": {"strategies": mean_curves(out)}} if len(out["seeds"]) > 1 else out["seeds"]
    for seed, result in seeds.items():
        random_curve = result["strategies"]["random"]
        level, random_needed = random_curve[-1]["miou_gt"], random_curve[-1]["annotated"]
        summary[seed] = {
            strategy: {
                "annotations_to_reach_random_final": needed(curve, level),
                "share_of_random": None
                if needed(curve, level) is None
                else round(needed(curve, level) / random_needed, 3),
            }
            for strategy, curve in result["strategies"].items()
        }
    return summary


def to_markdown(out: dict) -> str:
    lines = [
        f"mIoU over the truth classes on the fixed validation set ({out['settings']['validation']} images) after each "
        f"round; {out['device']}",
        "",
    ]
    seeds = {**out["seeds"], "mean": {"strategies": mean_curves(out)}} if len(out["seeds"]) > 1 else out["seeds"]
    for seed, result in seeds.items():
        sizes = [p["annotated"] for p in result["strategies"][next(iter(result["strategies"]))]]
        lines += [
            f"seed {seed}" if seed != "mean" else f"mean over the {len(out['seeds'])} seeds",
            "",
            "| strategy | " + " | ".join(f"{n} annotated" for n in sizes) + " | to reach random's final |",
            "|---|" + "---|" * (len(sizes) + 1),
        ]
        for strategy, curve in result["strategies"].items():
            reach = out["summary"][seed][strategy]
            share = (
                "never"
                if reach["share_of_random"] is None
                else f"{reach['annotations_to_reach_random_final']} ({reach['share_of_random']:.0%})"
            )
            lines.append(f"| {strategy} | " + " | ".join(f"{p['miou_gt']:.3f}" for p in curve) + f" | {share} |")
        lines.append("")
    return "\n".join(lines)


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    colors = {"random": "tab:blue", "uncertainty": "tab:orange", "rule": "tab:green"}
    for strategy in STRATEGIES:
        curves = [r["strategies"][strategy] for r in out["seeds"].values() if strategy in r["strategies"]]
        if not curves:
            continue
        sizes = [p["annotated"] for p in curves[0]]
        values = np.array([[p["miou_gt"] for p in c] for c in curves])
        ax.plot(sizes, values.mean(0), "o-", color=colors[strategy], label=f"{strategy} (mean of {len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(sizes, values.min(0), values.max(0), color=colors[strategy], alpha=0.15)
    ax.set_xlabel("annotated scans")
    ax.set_ylabel("mIoU (truth classes), fixed validation set")
    ax.set_title("Which scans to annotate next (generated data)")
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
    parser.add_argument("--images", type=int, default=56, help="generated scans per seed: validation + pool")
    parser.add_argument("--validation", type=int, default=16, help="the fixed validation set")
    parser.add_argument("--initial", type=int, default=4, help="annotated before the first round")
    parser.add_argument("--k", type=int, default=4, help="scans annotated per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150, help="optimisation steps of every training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument(
        "--work", type=Path, help="keep the runs here (default: a temporary folder); again: resume after the last round"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--table", type=Path, help="only print the table (and --plot) of an earlier --out JSON")
    args = parser.parse_args()
    if args.table:
        out = json.loads(args.table.read_text())
        out["summary"] = summarise(out)  # as this version counts it
    else:
        if "random" not in args.strategies:
            parser.error("--strategies must include random: the others are measured against it")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="active_learning_") as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            out = {
                **result_header(args),
                "seeds": {str(seed): run_seed(args, work / f"seed{seed}", seed) for seed in args.seeds},
            }
        out["summary"] = summarise(out)
        out["total_seconds"] = round(time.perf_counter() - started, 1)
        if args.out:
            args.out.write_text(json.dumps(out, indent=1) + "\n")
            print(f"wrote {args.out}")
    print(to_markdown(out))
    if args.plot:
        plot(out, args.plot)


if __name__ == "__main__":
    main()
