"""A study's statistics: per-group mean ± sample std over folds, TTA gains, paired per-fold differences, and
the baseline group.

Because all groups share the same folds, the honest comparison is the PAIRED per-fold difference between
groups, reported beside the mean ± std; folds validated on different images are not paired.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf

from heritage_seg.study.overrides import default_train_config
from heritage_seg.study.runs import FinishedRun

log = logging.getLogger(__name__)
SUMMARY_METRICS = ("miou_gt", "miou", "pixel_accuracy", "mean_dice")
# Both means are reported (see heritage_seg/evaluation/metrics.py): over the classes in the validation truth (what
# selected the checkpoint) and strict (truth or prediction, mmsegmentation's figure, comparable with the seed's table).
PAIRED_METRICS = ("miou_gt", "miou")
BINARY_METRICS = ("iou", "dice", "precision", "recall", "f1")  # metrics.json `binary`: any damage vs clean
BLOCK_PAIRED_METRICS = ("binary.iou", "coarse.miou_gt")  # also paired against the baseline group


def suffix(metric: str) -> str:
    """Keys without a suffix are the strict mIoU's (as before miou_gt existed): vs_baseline, vs_baseline_miou_gt."""
    return "" if metric == "miou" else f"_{metric}"


# What the plan's tables call a row that one override makes (conf/ablation/ presets)
ROW_NAMES = {"heads=multitask": "+Multi-Task"}


def _row_name(override: str) -> str:
    key, _, value = override.partition("=")
    if key == "data.progressive" and value not in ("null", "None", ""):
        try:
            stages = yaml.safe_load(value)
            return "+Progressive (" + " → ".join(f"{size} px × {epochs}" for size, epochs in stages) + ")"
        except (yaml.YAMLError, TypeError, ValueError):
            return "+Progressive"
    return ROW_NAMES.get(override, override)


def row_label(overrides: set[str]) -> str:
    """A group's label: the overrides that set it apart from the other groups, as the plan's tables name them."""
    return ",".join(_row_name(o) for o in sorted(overrides)) or "(defaults)"


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
    matrices = [p.get("confusion_matrix") for p in payloads]
    if all(m is not None for m in matrices):  # summed over folds: every validation pixel of the study once
        out["confusion_matrix"] = np.sum([np.asarray(m, dtype=np.int64) for m in matrices], axis=0).tolist()
    out["binary"] = _blocks_over_folds(runs, [p.get("binary") for p in payloads], BINARY_METRICS)
    coarse = [p.get("coarse") for p in payloads]
    if all(c is not None for c in coarse) and len({tuple(c["groups"]) for c in coarse}) == 1:
        out["coarse"] = {
            **_blocks_over_folds(runs, coarse, ("miou_gt", "miou")),
            "groups": {
                name: _blocks_over_folds(runs, [c["groups"][name] for c in coarse], ("iou",))["iou"]
                for name in coarse[0]["groups"]
            },
        }
    else:  # no groups, or runs of label maps with other groups: nothing comparable
        out["coarse"] = None
    classes = payloads[0].get("classes") or list(payloads[0].get("per_class", {}))
    out["classes"] = list(classes)
    out["per_class_iou"] = {
        name: {
            **_stats(vals := [p["per_class"][name]["iou"] for p in payloads]),
            "per_fold": dict(zip([r.fold for r in runs], vals)),
        }
        for name in classes
    }
    return out


def _blocks_over_folds(runs: list[FinishedRun], blocks: list[dict[str, Any] | None], keys) -> dict[str, Any] | None:
    """Mean ± std over folds and the per-fold values of `keys` of one block of every run (None: a run lacks it)."""
    if any(b is None for b in blocks):
        return None
    folds = [r.fold for r in runs]
    return {k: {**_stats(v := [b.get(k) for b in blocks]), "per_fold": dict(zip(folds, v))} for k in keys}


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
            raise ValueError(
                f"group '{name}': fold(s) {sorted({f for f in folds if folds.count(f) > 1})} appear "
                "in more than one run folder; pass only one sweep per group"
            )
        missing = sorted(set(expected) - set(folds))
        if missing:
            message = f"group '{name}' is missing fold(s) {missing}: its mean is over {len(folds)} fold(s) only"
            summary["warnings"].append(message)
            log.warning("!!! %s", message)
        plain, tta = _summarise_group(members, "metrics"), _summarise_group(members, "metrics_tta")
        resolutions = sorted({r.resolution for r in members})
        if len(resolutions) > 1:
            message = (
                f"group '{name}' mixes runs scored at the masks' own resolution and at the input size "
                f"({', '.join(resolutions)}): its mean mixes two kinds of figure; re-evaluate the older runs"
            )
            summary["warnings"].append(message)
            log.warning("!!! %s", message)
        gains = {}
        for metric in PAIRED_METRICS:  # tta_gain_miou (strict), tta_gain_miou_gt
            gains[f"tta_gain_{metric}"] = (
                None
                if tta is None
                else _stats(
                    [
                        t - p
                        for t, p in zip(tta[metric]["per_fold"].values(), plain[metric]["per_fold"].values())
                        if t is not None and p is not None
                    ]
                )
            )
        summary["groups"][name] = {
            "resolution": resolutions[0] if len(resolutions) == 1 else "mixed",
            "train_resolution": _summarise_group(members, "metrics_train"),
            "held_out": {r.fold: r.metrics.get("held_out") for r in members}
            if members[0].metrics.get("held_out")
            else None,
            "label": row_label(override_sets[name] - common),
            "encoder": members[0].encoder,
            "family": members[0].family,
            # what the runs' weights started from (metrics.json `started_from`; runs from before it: unrecorded)
            "started_from": sorted({str(r.metrics.get("started_from") or "unrecorded") for r in members}),
            "folds": folds,
            "expected_folds": expected,
            "validation_sets": {r.fold: r.val_set for r in members},
            "runs": [str(r.path) for r in members],
            "no_tta": plain,
            "tta": tta,
            **gains,
        }
    summary["expected_folds"] = sorted({f for g in summary["groups"].values() for f in g["expected_folds"]})
    summary["baseline"] = pick_baseline(summary["groups"], {n: override_sets[n] - common for n in groups}, baseline)
    for metric in PAIRED_METRICS:  # keys without a suffix are the strict mIoU's (as before miou_gt existed)
        key = suffix(metric)
        summary[f"paired_differences{key}"] = paired_differences(summary["groups"], metric=metric)
        if summary["baseline"] is not None:
            base = summary["groups"][summary["baseline"]]
            for name, group in summary["groups"].items():
                group[f"vs_baseline{key}"] = None if name == summary["baseline"] else _paired(group, base, metric)
    if summary["baseline"] is not None:  # the damage-vs-clean and coarse figures against the baseline too
        base = summary["groups"][summary["baseline"]]
        for name, group in summary["groups"].items():
            for metric in BLOCK_PAIRED_METRICS:
                key = f"vs_baseline_{metric.replace('.', '_')}"
                group[key] = None if name == summary["baseline"] else _paired(group, base, metric)
    for d in summary["paired_differences"]:
        if d["unpaired_folds"]:
            message = (
                f"groups '{d['a_label']}' and '{d['b_label']}': fold(s) {d['unpaired_folds']} were validated "
                "on different images (another split, seed, n_folds or data), so they are not paired"
            )
            summary["warnings"].append(message)
            log.warning("!!! %s", message)
    return summary


def pick_baseline(groups: dict[str, Any], differing: dict[str, set[str]], baseline: str | None) -> str | None:
    """`baseline=<label>` if given, else the group whose differing overrides are all the config's defaults."""
    if baseline is not None:
        matches = [n for n, g in groups.items() if baseline in (n, g["label"])]
        if not matches:
            raise ValueError(f"baseline={baseline}: no such group; groups are {[g['label'] for g in groups.values()]}")
        return matches[0]
    if len(groups) < 2:
        return None
    choices, defaults = default_train_config()

    def is_default(override: str) -> bool:
        key, _, value = override.lstrip("+").partition("=")
        if key in choices:
            return str(choices[key]) == value
        current = OmegaConf.select(defaults, key, default=None)
        if current is None:  # data.progressive=null, init_from=null: the default when the default is null
            return value.lower() in ("null", "none") and OmegaConf.select(defaults, key, default="absent") is None
        return str(current).lower() == value.lower()

    # a group with no differing override at all ran the config's defaults: it is the baseline too
    found = [n for n in sorted(groups) if all(is_default(o) for o in differing[n])]
    return found[0] if found else None


def _per_fold(group: dict[str, Any], variant: str, metric: str) -> dict[int, float | None] | None:
    """A metric's per-fold values; `binary.iou`, `coarse.miou_gt`: inside a block (None: a run lacks it)."""
    found: Any = group[variant]
    for part in metric.split("."):
        found = None if found is None else found.get(part)
    return None if found is None else found["per_fold"]


def _paired(group_a: dict[str, Any], group_b: dict[str, Any], metric: str, variant: str = "no_tta") -> dict[str, Any]:
    """Per-fold differences over the folds on which both groups were validated on the same images."""
    a, b = _per_fold(group_a, variant, metric), _per_fold(group_b, variant, metric)
    if a is None or b is None:
        return {"folds": [], "unpaired_folds": [], "per_fold": [], **_stats([])}
    sets_a, sets_b = group_a["validation_sets"], group_b["validation_sets"]
    common = sorted(set(a) & set(b))
    folds = [f for f in common if sets_a.get(f) == sets_b.get(f)]  # unrecorded (None) on both: by fold index
    diffs = [a[f] - b[f] for f in folds if a[f] is not None and b[f] is not None]
    return {"folds": folds, "unpaired_folds": [f for f in common if f not in folds], "per_fold": diffs, **_stats(diffs)}


def paired_differences(groups: dict[str, Any], variant: str = "no_tta", metric: str = "miou") -> list[dict[str, Any]]:
    """mIoU(A) - mIoU(B) on each fold both have, then mean and sample std of those differences."""
    out = []
    for a, b in itertools.combinations(sorted(groups), 2):
        paired = _paired(groups[a], groups[b], metric, variant)
        out.append({"a": a, "b": b, "a_label": groups[a]["label"], "b_label": groups[b]["label"], **paired})
    return out
