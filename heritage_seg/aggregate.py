"""Cross-validation summary of a sweep:  python -m heritage_seg.aggregate runs=multirun/2026-11-24/10-00-00

Runs are grouped by every override except `fold`, so an encoder sweep and an ablation sweep (loss=…,
loss.class_weights=…) are summarised the same way. Because all groups share the same folds, the honest
comparison is the PAIRED per-fold difference between groups, reported beside the mean ± std.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from heritage_seg.cli import exit_on_user_error
from heritage_seg.files import write_json_atomic, write_text_atomic
from heritage_seg.metrics import segmentation_metrics
from heritage_seg.reports import plt, save_figure

log = logging.getLogger(__name__)
SUMMARY_METRICS = ("miou_gt", "miou", "pixel_accuracy", "mean_dice")
# Both means are reported (see heritage_seg/metrics.py): over the classes in the validation truth (what selected
# the checkpoint) and strict (truth or prediction, mmsegmentation's figure, comparable with the seed's table).
PAIRED_METRICS = ("miou_gt", "miou")


@dataclass
class FinishedRun:
    path: Path
    overrides: tuple[str, ...]  # the run's overrides minus fold and bookkeeping ones: what defines its group
    group: str
    fold: int
    n_folds: int
    encoder: str
    family: str
    metrics: dict[str, Any]
    metrics_tta: dict[str, Any] | None
    val_set: str | None = None  # fingerprint of the validation ids (splits.json); None: not recorded


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.exists() else []


def _with_miou_gt(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json written before miou_gt existed: recompute it from the confusion matrix it holds."""
    if "miou_gt" not in metrics and metrics.get("confusion_matrix") is not None:
        metrics["miou_gt"] = segmentation_metrics(metrics["confusion_matrix"])["miou_gt"]
    return metrics


@functools.lru_cache(maxsize=1)
def _bookkeeping_keys() -> frozenset[str]:
    """Overrides that say where or how a run ran, not what it trained: the training config's own
    `hydra.job.config.override_dirname.exclude_keys` (one list for sweep folder names and for grouping here),
    plus `fold` (what groups are made of) and `run_dir`."""
    _, cfg = _default_choices()
    return frozenset(cfg.hydra.job.config.override_dirname.exclude_keys) | {"fold", "run_dir"}


def _is_bookkeeping(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return key in _bookkeeping_keys() or key.startswith(("hydra.", "hydra/"))


def _validation_set(run_dir: Path) -> str | None:
    """Runs are paired only when they were validated on the same images (same split, seed, n_folds, data)."""
    path = run_dir / "splits.json"
    if not path.exists():
        return None
    ids = json.loads(path.read_text()).get("val_ids")
    return None if ids is None else hashlib.sha256(json.dumps(sorted(ids)).encode()).hexdigest()[:16]


def find_runs(paths: Sequence[str | Path]) -> list[FinishedRun]:
    """Every run folder under `paths` (a folder with .hydra/config.yaml) that has a metrics.json."""
    run_dirs: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"runs={path}: no such folder")
        found = [path] if (path / ".hydra" / "config.yaml").exists() else []
        found += sorted(p.parent.parent for p in path.glob("**/.hydra/config.yaml") if p.parent.parent != path)
        run_dirs.extend(found)
    runs, unfinished = [], []
    for run_dir in sorted(set(run_dirs)):
        if not (run_dir / "metrics.json").exists():
            unfinished.append(run_dir)
            continue
        metrics = _with_miou_gt(json.loads((run_dir / "metrics.json").read_text()))
        tta_path = run_dir / "metrics_tta.json"
        overrides = [o for o in _overrides(run_dir) if not _is_bookkeeping(o)]
        runs.append(FinishedRun(
            path=run_dir,
            overrides=tuple(sorted(overrides)),
            group=",".join(sorted(overrides)) or "(defaults)",
            fold=int(metrics["fold"]),
            n_folds=int(metrics.get("n_folds", 0)),
            encoder=str(metrics.get("encoder", "?")),
            family=str(metrics.get("family") or "?"),
            metrics=metrics,
            metrics_tta=_with_miou_gt(json.loads(tta_path.read_text())) if tta_path.exists() else None,
            val_set=_validation_set(run_dir),
        ))
    if unfinished:
        warnings.warn(f"{len(unfinished)} run folder(s) have no metrics.json (failed or still running), "
                      f"left out: {', '.join(str(p) for p in unfinished)}", stacklevel=2)
    if not runs:
        raise FileNotFoundError(
            f"runs={', '.join(map(str, paths))}: no finished run (a run folder with metrics.json) found"
        )
    return runs


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample std (ddof=1) over folds; folds where the value is undefined (null) are left out."""
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    return {
        "mean": float(defined.mean()) if defined.size else None,
        "std": float(defined.std(ddof=1)) if defined.size > 1 else None,  # one fold: undefined, not 0
        "n": int(defined.size),
    }


def _summarise_group(runs: list[FinishedRun], key: str) -> dict[str, Any] | None:
    payloads = [getattr(r, key) for r in runs]
    if any(p is None for p in payloads):
        return None
    out = {}
    for metric in SUMMARY_METRICS:
        values = [p.get(metric) for p in payloads]
        out[metric] = {**_stats(values), "per_fold": dict(zip([r.fold for r in runs], values))}
    classes = payloads[0].get("classes") or list(payloads[0].get("per_class", {}))
    out["per_class_iou"] = {
        name: {**_stats(vals := [p["per_class"][name]["iou"] for p in payloads]),
               "per_fold": dict(zip([r.fold for r in runs], vals))}
        for name in classes
    }
    return out


def summarise(runs: list[FinishedRun], baseline: str | None = None) -> dict[str, Any]:
    groups: dict[str, list[FinishedRun]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    # Overrides shared by every group say nothing about the comparison: shown once, left out of the labels.
    override_sets = {name: set(members[0].overrides) for name, members in groups.items()}
    common = set.intersection(*override_sets.values()) if len(groups) > 1 else set()
    summary: dict[str, Any] = {"groups": {}, "common_overrides": sorted(common), "warnings": []}
    for name, members in sorted(groups.items()):
        members.sort(key=lambda r: r.fold)
        folds = [r.fold for r in members]
        n_folds = max(r.n_folds for r in members)  # per group: split=material has as many folds as materials
        expected = list(range(n_folds)) if n_folds else folds
        if len(set(folds)) != len(folds):
            raise ValueError(f"group '{name}': fold(s) {sorted({f for f in folds if folds.count(f) > 1})} appear "
                             "in more than one run folder; pass only one sweep per group")
        missing = sorted(set(expected) - set(folds))
        if missing:
            message = f"group '{name}' is missing fold(s) {missing}: its mean is over {len(folds)} fold(s) only"
            summary["warnings"].append(message)
            log.warning("!!! %s", message)
        plain, tta = _summarise_group(members, "metrics"), _summarise_group(members, "metrics_tta")
        gains = {}
        for metric in PAIRED_METRICS:  # tta_gain_miou (strict), tta_gain_miou_gt
            gains[f"tta_gain_{metric}"] = None if tta is None else _stats(
                [t - p for t, p in zip(tta[metric]["per_fold"].values(), plain[metric]["per_fold"].values())
                 if t is not None and p is not None])
        summary["groups"][name] = {
            "held_out": {r.fold: r.metrics.get("held_out") for r in members} if members[0].metrics.get("held_out")
            else None,
            "label": ",".join(sorted(override_sets[name] - common)) or "(defaults)",
            "encoder": members[0].encoder, "family": members[0].family, "folds": folds, "expected_folds": expected,
            "validation_sets": {r.fold: r.val_set for r in members},
            "runs": [str(r.path) for r in members], "no_tta": plain, "tta": tta, **gains,
        }
    summary["expected_folds"] = sorted({f for g in summary["groups"].values() for f in g["expected_folds"]})
    summary["baseline"] = pick_baseline(summary["groups"], {n: override_sets[n] - common for n in groups}, baseline)
    for metric in PAIRED_METRICS:  # keys without a suffix are the strict mIoU's (as before miou_gt existed)
        suffix = _suffix(metric)
        summary[f"paired_differences{suffix}"] = paired_differences(summary["groups"], metric=metric)
        if summary["baseline"] is not None:
            base = summary["groups"][summary["baseline"]]
            for name, group in summary["groups"].items():
                group[f"vs_baseline{suffix}"] = None if name == summary["baseline"] else _paired(group, base, metric)
    for d in summary["paired_differences"]:
        if d["unpaired_folds"]:
            message = (f"groups '{d['a_label']}' and '{d['b_label']}': fold(s) {d['unpaired_folds']} were validated "
                       "on different images (another split, seed, n_folds or data), so they are not paired")
            summary["warnings"].append(message)
            log.warning("!!! %s", message)
    return summary


def _default_choices() -> tuple[dict[str, str], Any]:
    """The training config's defaults: group choices (loss=dice_focal …) and values (loss.class_weights …)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    conf = Path(__file__).resolve().parents[1] / "conf"
    state = Singleton.get_state()  # under `python -m heritage_seg.aggregate` Hydra is already initialised
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("train", overrides=["run_dir=."], return_hydra_config=True)
    finally:
        Singleton.set_state(state)
    return dict(cfg.hydra.runtime.choices), cfg


def pick_baseline(groups: dict[str, Any], differing: dict[str, set[str]], baseline: str | None) -> str | None:
    """`baseline=<label>` if given, else the group whose differing overrides are all the config's defaults."""
    if baseline is not None:
        matches = [n for n, g in groups.items() if baseline in (n, g["label"])]
        if not matches:
            raise ValueError(f"baseline={baseline}: no such group; groups are {[g['label'] for g in groups.values()]}")
        return matches[0]
    if len(groups) < 2:
        return None
    choices, defaults = _default_choices()

    def is_default(override: str) -> bool:
        key, _, value = override.lstrip("+").partition("=")
        if key in choices:
            return str(choices[key]) == value
        current = OmegaConf.select(defaults, key, default=None)
        return current is not None and str(current).lower() == value.lower()

    # a group with no differing override at all ran the config's defaults: it is the baseline too
    found = [n for n in sorted(groups) if all(is_default(o) for o in differing[n])]
    return found[0] if found else None


def _paired(group_a: dict[str, Any], group_b: dict[str, Any], metric: str, variant: str = "no_tta") -> dict[str, Any]:
    """Per-fold differences over the folds on which both groups were validated on the same images."""
    a, b = group_a[variant][metric]["per_fold"], group_b[variant][metric]["per_fold"]
    sets_a, sets_b = group_a["validation_sets"], group_b["validation_sets"]
    common = sorted(set(a) & set(b))
    folds = [f for f in common if sets_a.get(f) == sets_b.get(f)]  # unrecorded (None) on both: by fold index
    diffs = [a[f] - b[f] for f in folds if a[f] is not None and b[f] is not None]
    return {"folds": folds, "unpaired_folds": [f for f in common if f not in folds], "per_fold": diffs,
            **_stats(diffs)}


def paired_differences(groups: dict[str, Any], variant: str = "no_tta", metric: str = "miou") -> list[dict[str, Any]]:
    """mIoU(A) - mIoU(B) on each fold both have, then mean and sample std of those differences."""
    out = []
    for a, b in itertools.combinations(sorted(groups), 2):
        paired = _paired(groups[a], groups[b], metric, variant)
        out.append({"a": a, "b": b, "a_label": groups[a]["label"], "b_label": groups[b]["label"], **paired})
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _fmt(stats: dict[str, Any] | None, scale: float = 100.0) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    if stats.get("std") is None:
        return f"{scale * stats['mean']:.2f} (1 fold, no std)"
    return f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"


METRIC_TITLES = {
    "miou_gt": "mIoU over the classes present in the validation truth (what selected each best.ckpt)",
    "miou": "strict mIoU: classes in truth or prediction, a predicted absent class counts 0 (mmsegmentation's)",
}


def _suffix(metric: str) -> str:
    return "" if metric == "miou" else f"_{metric}"


def _results_table(summary: dict[str, Any], metric: str) -> list[str]:
    suffix = _suffix(metric)
    lines = [f"## {METRIC_TITLES[metric]}", "",
             "| group | encoder | family | mIoU | per fold | mIoU (TTA) | TTA gain | vs baseline | pixel acc. | mDice |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in summary["groups"].items():
        per_fold = " / ".join(_pct(v) for v in g["no_tta"][metric]["per_fold"].values())
        lines.append(f"| {g['label']} | {g['encoder']} | {g['family']} | {_fmt(g['no_tta'][metric])} | {per_fold} | "
                     f"{_fmt(g['tta'][metric]) if g['tta'] else '-'} | {_fmt(g[f'tta_gain_{metric}'])} | "
                     f"{'baseline' if name == summary.get('baseline') else _fmt(g.get(f'vs_baseline{suffix}'))} | "
                     f"{_fmt(g['no_tta']['pixel_accuracy'])} | {_fmt(g['no_tta']['mean_dice'])} |")
    return lines


def to_markdown(summary: dict[str, Any]) -> str:
    lines = ["# Cross-validation results", "",
             f"mIoU in %, mean ± sample std over folds {summary['expected_folds']}; dataset-level metrics per fold.",
             f"Common to all groups: {' '.join(summary['common_overrides']) or '(nothing)'}",
             "vs baseline: paired per-fold mIoU difference to the baseline group (mean ± std, points)", ""]
    for metric in PAIRED_METRICS:
        lines += _results_table(summary, metric) + [""]
    held_out = [(g, fold, name) for g in summary["groups"].values() if g.get("held_out")
                for fold, name in g["held_out"].items()]
    if held_out:
        lines += ["## mIoU per held-out group (model never saw this material / content type)", "",
                  "| group | held out | mIoU (truth classes) | mIoU (strict) | mIoU (strict, TTA) |",
                  "|---|---|---|---|---|"]
        for g, fold, name in held_out:
            values = [g["no_tta"]["miou_gt"]["per_fold"][fold], g["no_tta"]["miou"]["per_fold"][fold],
                      g["tta"]["miou"]["per_fold"][fold] if g["tta"] else None]
            lines.append(f"| {g['label']} | {name} | " + " | ".join(_pct(v) for v in values) + " |")
        lines.append("")
    for metric in PAIRED_METRICS:
        differences = summary[f"paired_differences{_suffix(metric)}"]
        if differences:
            kind = "mIoU over truth classes" if metric == "miou_gt" else "strict mIoU"
            lines += [f"## Paired differences (same folds), {kind} A − B in points", "",
                      "| A | B | folds | mean ± std | per fold |", "|---|---|---|---|---|"]
            for d in differences:
                lines.append(f"| {d['a_label']} | {d['b_label']} | {len(d['folds'])} | {_fmt(d)} | "
                             + " / ".join(f"{100 * v:+.2f}" for v in d["per_fold"]) + " |")
            lines.append("")
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_comparison(summary: dict[str, Any], path: Path) -> None:
    names = list(summary["groups"])
    fig, axes = plt.subplots(1, len(PAIRED_METRICS), figsize=(2 * max(4, 1.4 * len(names)), 4), sharey=True)
    for ax, metric in zip(axes, PAIRED_METRICS):
        for i, name in enumerate(names):
            g = summary["groups"][name]
            for offset, variant, color in ((-0.18, "no_tta", "tab:blue"), (0.18, "tta", "tab:orange")):
                if not g[variant]:
                    continue
                stats = g[variant][metric]
                ax.bar(i + offset, stats["mean"] or 0, 0.34, yerr=stats["std"] or 0, color=color, alpha=0.7,
                       capsize=3, label=("no TTA" if variant == "no_tta" else "TTA") if i == 0 else None)
                points = [v for v in stats["per_fold"].values() if v is not None]
                ax.scatter([i + offset] * len(points), points, color="black", s=12, zorder=3)
        labels = [f"{summary['groups'][n]['label']}\n({summary['groups'][n]['family']})" for n in names]
        ax.set_xticks(range(len(names)), labels, fontsize=8)
        ax.set_title("mIoU over truth classes" if metric == "miou_gt" else "strict mIoU", fontsize=10)
        ax.legend()
    axes[0].set_ylabel("validation mIoU")
    fig.suptitle("Cross-validation: mean ± std, dots = folds")
    save_figure(fig, path)


def aggregate(paths: Sequence[str | Path], out_dir: str | Path | None = None,
              baseline: str | None = None) -> dict[str, Any]:
    paths = [Path(p) for p in paths]
    runs = find_runs(paths)
    out = Path(out_dir) if out_dir else (paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p) for p in paths])))
    summary = summarise(runs, baseline)
    write_json_atomic(out / "cv_results.json", summary)
    markdown = to_markdown(summary)
    write_text_atomic(out / "cv_results.md", markdown)
    plot_comparison(summary, out / "cv_comparison.png")
    print(markdown)
    log.info("wrote cv_results.json, cv_results.md, cv_comparison.png to %s", out)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="aggregate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    runs = cfg.runs
    aggregate(list(runs) if isinstance(runs, (list, ListConfig)) else [runs], cfg.get("out"), cfg.get("baseline"))


if __name__ == "__main__":
    main()
