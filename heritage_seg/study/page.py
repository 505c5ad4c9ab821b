"""aggregate's report.html: the whole study on one self-contained page, to read at a glance and to share.

The cross-validation tables (mean ± std and every fold, with and without TTA), the paired per-fold differences,
per-class IoU with error bars across folds, each group's confusion matrix (summed over its folds) side by side,
and the best/worst prediction panels where `evaluate` made them inside a run folder. The numbers are those of
cv_results.json; pictures are embedded, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup
from PIL import Image

from heritage_seg.core.cli import override
from heritage_seg.reporting.figures import confusion_figure, figure_uri, plt
from heritage_seg.reporting.html import thumbnail_uri
from heritage_seg.reporting.templating import render
from heritage_seg.runs.folder import BEST, EVALUATION_SUBDIR, VIEWER_SUFFIX, panel_overlays, panel_stem
from heritage_seg.study.render import (
    BINARY_TITLE,
    COARSE_TITLE,
    METRIC_TITLES,
    RESOLUTION_NAMES,
    Cell,
    _fmt,
    _pct,
    binary_table,
    coarse_table,
    started_from_line,
)
from heritage_seg.study.stats import PAIRED_METRICS, suffix


def _mean(stats: dict[str, Any] | None) -> float | None:
    return None if not stats else stats.get("mean")


def cell(value: Any, sort: float | str | None = None, numeric: bool = False) -> dict[str, Any]:
    """A table cell as the page's template lays it out: its text, what sorting compares, right-aligned or not."""
    return {"value": value, "sort": sort, "numeric": numeric}


def _results_table(summary: dict[str, Any], metric: str) -> dict[str, Any]:
    rows = []
    for name, g in summary["groups"].items():
        plain, tta = g["no_tta"][metric], (g["tta"] or {}).get(metric)
        folds = " / ".join(f"{k}: {_pct(v)}" for k, v in plain["per_fold"].items())
        tta_folds = " / ".join(f"{k}: {_pct(v)}" for k, v in tta["per_fold"].items()) if tta else "-"
        vs = "baseline" if name == summary.get("baseline") else _fmt(g.get(f"vs_baseline{suffix(metric)}"))
        rows.append(
            [
                cell(g["label"]),
                cell(g["encoder"]),
                cell(g["family"]),
                cell(_fmt(plain), sort=_mean(plain), numeric=True),
                cell(folds),
                cell(_fmt(tta), sort=_mean(tta), numeric=True),
                cell(tta_folds),
                cell(_fmt(g[f"tta_gain_{metric}"]), numeric=True),
                cell(vs, numeric=True),
                cell(_fmt(g["no_tta"]["pixel_accuracy"]), numeric=True),
                cell(_fmt(g["no_tta"]["mean_dice"]), numeric=True),
            ]
        )
    headers = [
        "group",
        "encoder",
        "family",
        "mIoU",
        "per fold",
        "mIoU (TTA)",
        "per fold (TTA)",
        "TTA gain",
        "vs baseline (paired)",
        "pixel acc.",
        "mDice",
    ]
    return {"title": METRIC_TITLES[metric], "headers": headers, "rows": rows}


def _block_table(title: str, table: tuple[list[str], list[list[Cell]]] | None) -> dict[str, Any] | None:
    if table is None:
        return None
    headers, rows = table
    return {
        "title": title,
        "headers": headers,
        "rows": [[cell(text, sort=sort, numeric=i > 1) for i, (text, sort) in enumerate(row)] for row in rows],
    }


def _paired_tables(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for metric in PAIRED_METRICS:
        differences = summary[f"paired_differences{suffix(metric)}"]
        if not differences:
            continue
        kind = "mIoU over truth classes" if metric == "miou_gt" else "strict mIoU"
        rows = [
            [
                d["a_label"],
                d["b_label"],
                len(d["folds"]),
                cell(_fmt(d), sort=d.get("mean"), numeric=True),
                " / ".join(f"{100 * v:+.2f}" for v in d["per_fold"]),
                ", ".join(map(str, d["unpaired_folds"])) or "-",
            ]
            for d in differences
        ]
        out.append(
            {
                "title": f"Paired differences on the same folds, {kind}: A − B in points",
                "rows": rows,
                "headers": ["A", "B", "paired folds", "mean ± std", "per fold", "unpaired folds"],
            }
        )
    return out


def per_class_chart(summary: dict[str, Any]) -> str | None:
    groups = [g for g in summary["groups"].values() if g["no_tta"].get("per_class_iou")]
    if not groups:
        return None
    classes = groups[0]["no_tta"]["classes"]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(classes) * max(1, len(groups)) / 2), 4.5))
    width = 0.8 / len(groups)
    for k, g in enumerate(groups):
        rows = [g["no_tta"]["per_class_iou"][c] for c in classes]
        means = [r["mean"] if r["mean"] is not None else np.nan for r in rows]
        stds = [r["std"] if r["std"] is not None else 0 for r in rows]
        ax.bar(
            np.arange(len(classes)) + (k - (len(groups) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=f"{g['label']} ({g['family']})",
        )
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_ylabel("IoU, mean ± std over folds")
    ax.set_ylim(0, 1)
    ax.set_title("Per-class IoU (no TTA); no bar: the class was in no validation fold's truth or prediction")
    ax.legend(fontsize=8)
    return figure_uri(fig)


def _per_class_table(summary: dict[str, Any]) -> dict[str, Any]:
    groups = list(summary["groups"].values())
    classes = groups[0]["no_tta"]["classes"]
    rows = [
        [name]
        + [
            cell(_fmt(g["no_tta"]["per_class_iou"][name]), sort=_mean(g["no_tta"]["per_class_iou"][name]), numeric=True)
            for g in groups
        ]
        for name in classes
    ]
    return {"headers": ["class"] + [g["label"] for g in groups], "rows": rows}


def _panels(group: dict[str, Any], page_dir: Path | None, comparisons: dict[str, str]) -> list[dict[str, Any]]:
    """The runs' best/worst panels, each linking to its own viewer page (evaluate viewer=true) and, for the
    baseline's, to the page comparing every group on that image (study/compare.py)."""
    found = []
    for run in group["runs"]:
        for path in panel_overlays(Path(run)):
            viewer = Path(f"{panel_stem(path)}{VIEWER_SUFFIX}")
            with Image.open(path) as img:
                found.append(
                    {
                        "uri": Markup(thumbnail_uri(img, 420)),
                        "alt": path.name,
                        "caption": f"{Path(run).name}: {path.name}",
                        "viewer": _link(viewer, page_dir) if viewer.is_file() else None,
                        "compare": comparisons.get(str(path)),
                    }
                )
    return found


def _link(path: Path, page_dir: Path | None) -> str:
    """`path` as the study page links to it: relative to the page's folder (it works from file:// and moved
    together with the runs), absolute where the page's folder is not known."""
    return os.path.relpath(path, page_dir) if page_dir is not None else path.resolve().as_uri()


def _evaluate_commands(groups: list[dict[str, Any]]) -> list[str]:
    """For each run without panels, the command that makes them, with paths that paste as they are."""
    return [
        "python -m heritage_seg.evaluate "
        f"{override('ckpt', Path(run) / BEST)} {override('hydra.run.dir', Path(run) / EVALUATION_SUBDIR)}"
        for g in groups
        for run in g["runs"]
        if (Path(run) / BEST).is_file() and not panel_overlays(Path(run))
    ]


def study_html(
    summary: dict[str, Any],
    comparison_png: Path | None = None,
    page_dir: Path | None = None,
    comparisons: dict[str, str] | None = None,
) -> str:
    """The whole page from aggregate's summary (cv_results.json) and, if given, its comparison chart; `page_dir`:
    the folder the page is written to (its links to viewer pages are relative to it); `comparisons`: the
    baseline's panels' comparison pages (study/compare.py)."""
    groups = list(summary["groups"].values())
    chart = None
    if comparison_png is not None and comparison_png.exists():
        with Image.open(comparison_png) as chart_png:
            chart = Markup(thumbnail_uri(chart_png, 1100))
    train_resolution = None
    if any(g.get("resolution") == "native" and g.get("train_resolution") for g in groups):
        train_resolution = [
            [g["label"], g["encoder"]]
            + [
                cell(
                    _fmt((g.get("train_resolution") or {}).get(k)),
                    sort=_mean((g.get("train_resolution") or {}).get(k)),
                    numeric=True,
                )
                for k in ("miou_gt", "miou", "pixel_accuracy")
            ]
            for g in groups
        ]
    per_class = per_class_chart(summary)
    matrices = [
        {
            "uri": Markup(
                figure_uri(
                    confusion_figure(
                        g["no_tta"]["confusion_matrix"],
                        g["no_tta"]["classes"],
                        f"{g['label']} ({g['family']}), {len(g['folds'])} fold(s)",
                        compact=True,
                    )
                )
            ),
            "alt": f"confusion matrix of {g['label']}",
        }
        for g in groups
        if g["no_tta"].get("confusion_matrix")
    ]
    return render(
        "study_report.html.j2",
        title="heritage_seg — cross-validation study",
        sortable=True,
        expected_folds=summary["expected_folds"],
        common=" ".join(summary["common_overrides"]) or "(nothing)",
        resolutions="; ".join(
            f"{g['label']}: {RESOLUTION_NAMES.get(g.get('resolution'), g.get('resolution'))}" for g in groups
        ),
        started_from=started_from_line(groups),
        warnings=summary["warnings"],
        results=[_results_table(summary, metric) for metric in PAIRED_METRICS]
        + [
            t
            for t in (
                _block_table(BINARY_TITLE, binary_table(summary)),
                _block_table(COARSE_TITLE, coarse_table(summary)),
            )
            if t
        ],
        chart=chart,
        train_resolution=train_resolution,
        paired=_paired_tables(summary),
        per_class_chart=None if per_class is None else Markup(per_class),
        per_class=_per_class_table(summary) if per_class else None,
        matrices=matrices,
        panels={g["label"]: _panels(g, page_dir, comparisons or {}) for g in groups},
        evaluate_commands=_evaluate_commands(groups),
    )
