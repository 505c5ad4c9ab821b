"""A study's summary as people read it: the markdown tables and the comparison chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heritage_seg.reporting.figures import plt, save_figure
from heritage_seg.study.stats import PAIRED_METRICS, suffix


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


RESOLUTION_NAMES = {
    "native": "each mask's own resolution",
    "train": "the model's input size (masks squashed)",
    "mixed": "MIXED (see warnings)",
}


def started_from_line(groups: list[dict[str, Any]]) -> str:
    """What each group's runs started from (metrics.json `started_from`), for the markdown and the page."""
    return "; ".join(f"{g['label']}: {', '.join(g.get('started_from') or ['?'])}" for g in groups)


BINARY_TITLE = "Any damage vs clean: IoU etc. of the damage pixels, the fine prediction collapsed (`binary`)"
COARSE_TITLE = "Coarse groups of damage (the label map's `groups:`): IoU per group, mean over the groups in the truth"
Cell = tuple[str, "float | None"]  # text, and the value a sortable table compares


def _cell(stats: dict[str, Any] | None) -> Cell:
    return _fmt(stats), None if not stats else stats.get("mean")


def _folds(stats: dict[str, Any] | None) -> Cell:
    return (" / ".join(_pct(v) for v in stats["per_fold"].values()) if stats else "-"), None


def _vs(summary: dict[str, Any], name: str, group: dict[str, Any], key: str) -> Cell:
    return ("baseline", None) if name == summary.get("baseline") else _cell(group.get(key))


def binary_table(summary: dict[str, Any]) -> tuple[list[str], list[list[Cell]]] | None:
    """Headers and rows of the damage-vs-clean table (markdown and the page), None when no run has the block."""
    groups = summary["groups"]
    if not any(g["no_tta"].get("binary") for g in groups.values()):
        return None
    headers = ["group", "encoder", "IoU", "per fold", "Dice", "precision", "recall", "F1", "IoU vs baseline (paired)"]
    rows = []
    for name, g in groups.items():
        b = g["no_tta"].get("binary") or {}
        rows.append(
            [(g["label"], None), (g["encoder"], None), _cell(b.get("iou")), _folds(b.get("iou"))]
            + [_cell(b.get(k)) for k in ("dice", "precision", "recall", "f1")]
            + [_vs(summary, name, g, "vs_baseline_binary_iou")]
        )
    return headers, rows


def coarse_table(summary: dict[str, Any]) -> tuple[list[str], list[list[Cell]]] | None:
    """Headers and rows of the coarse-group table, None when no run's label map has groups."""
    groups = summary["groups"]
    names = next((list(g["no_tta"]["coarse"]["groups"]) for g in groups.values() if g["no_tta"].get("coarse")), None)
    if names is None:
        return None
    headers = ["group", "encoder", "mIoU", "per fold", "vs baseline (paired)", *names]
    rows = []
    for name, g in groups.items():
        c = g["no_tta"].get("coarse") or {}
        rows.append(
            [(g["label"], None), (g["encoder"], None), _cell(c.get("miou_gt")), _folds(c.get("miou_gt"))]
            + [_vs(summary, name, g, "vs_baseline_coarse_miou_gt")]
            + [_cell((c.get("groups") or {}).get(n)) for n in names]
        )
    return headers, rows


def _markdown_table(title: str, table: tuple[list[str], list[list[Cell]]] | None) -> list[str]:
    if table is None:
        return []
    headers, rows = table
    lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(text for text, _ in row) + " |" for row in rows] + [""]


def _results_table(summary: dict[str, Any], metric: str) -> list[str]:
    key = suffix(metric)
    lines = [
        f"## {METRIC_TITLES[metric]}",
        "",
        "| group | encoder | family | mIoU | per fold | mIoU (TTA) | TTA gain | vs baseline | pixel acc. | mDice |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in summary["groups"].items():
        per_fold = " / ".join(_pct(v) for v in g["no_tta"][metric]["per_fold"].values())
        lines.append(
            f"| {g['label']} | {g['encoder']} | {g['family']} | {_fmt(g['no_tta'][metric])} | {per_fold} | "
            f"{_fmt(g['tta'][metric]) if g['tta'] else '-'} | {_fmt(g[f'tta_gain_{metric}'])} | "
            f"{'baseline' if name == summary.get('baseline') else _fmt(g.get(f'vs_baseline{key}'))} | "
            f"{_fmt(g['no_tta']['pixel_accuracy'])} | {_fmt(g['no_tta']['mean_dice'])} |"
        )
    return lines


def to_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Cross-validation results",
        "",
        f"mIoU in %, mean ± sample std over folds {summary['expected_folds']}; dataset-level metrics per fold.",
        f"Common to all groups: {' '.join(summary['common_overrides']) or '(nothing)'}",
        "vs baseline: paired per-fold mIoU difference to the baseline group (mean ± std, points)",
        "Resolution of each group's figures: "
        + "; ".join(
            f"{g['label']}: {RESOLUTION_NAMES.get(g.get('resolution'), g.get('resolution'))}"
            for g in summary["groups"].values()
        ),
        "Started from: " + started_from_line(list(summary["groups"].values())),
        "",
    ]
    for metric in PAIRED_METRICS:
        lines += _results_table(summary, metric) + [""]
    lines += _markdown_table(BINARY_TITLE, binary_table(summary))
    lines += _markdown_table(COARSE_TITLE, coarse_table(summary))
    if any(g.get("resolution") == "native" and g.get("train_resolution") for g in summary["groups"].values()):
        lines += [
            "## The same runs scored at the model's input size (masks squashed as in training; the seed's table)",
            "",
            "| group | encoder | mIoU (truth classes) | mIoU (strict) | pixel acc. |",
            "|---|---|---|---|---|",
        ]
        for g in summary["groups"].values():
            t = g.get("train_resolution") or {}
            lines.append(
                f"| {g['label']} | {g['encoder']} | {_fmt(t.get('miou_gt'))} | {_fmt(t.get('miou'))} | "
                f"{_fmt(t.get('pixel_accuracy'))} |"
            )
        lines.append("")
    held_out = [
        (g, fold, name) for g in summary["groups"].values() if g.get("held_out") for fold, name in g["held_out"].items()
    ]
    if held_out:
        lines += [
            "## mIoU per held-out group (model never saw this material / content type)",
            "",
            "| group | held out | mIoU (truth classes) | mIoU (strict) | mIoU (strict, TTA) |",
            "|---|---|---|---|---|",
        ]
        for g, fold, name in held_out:
            values = [
                g["no_tta"]["miou_gt"]["per_fold"][fold],
                g["no_tta"]["miou"]["per_fold"][fold],
                g["tta"]["miou"]["per_fold"][fold] if g["tta"] else None,
            ]
            lines.append(f"| {g['label']} | {name} | " + " | ".join(_pct(v) for v in values) + " |")
        lines.append("")
    for metric in PAIRED_METRICS:
        differences = summary[f"paired_differences{suffix(metric)}"]
        if differences:
            kind = "mIoU over truth classes" if metric == "miou_gt" else "strict mIoU"
            lines += [
                f"## Paired differences (same folds), {kind} A − B in points",
                "",
                "| A | B | folds | mean ± std | per fold |",
                "|---|---|---|---|---|",
            ]
            for d in differences:
                lines.append(
                    f"| {d['a_label']} | {d['b_label']} | {len(d['folds'])} | {_fmt(d)} | "
                    + " / ".join(f"{100 * v:+.2f}" for v in d["per_fold"])
                    + " |"
                )
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
                ax.bar(
                    i + offset,
                    stats["mean"] or 0,
                    0.34,
                    yerr=stats["std"] or 0,
                    color=color,
                    alpha=0.7,
                    capsize=3,
                    label=("no TTA" if variant == "no_tta" else "TTA") if i == 0 else None,
                )
                points = [v for v in stats["per_fold"].values() if v is not None]
                ax.scatter([i + offset] * len(points), points, color="black", s=12, zorder=3)
        labels = [f"{summary['groups'][n]['label']}\n({summary['groups'][n]['family']})" for n in names]
        ax.set_xticks(range(len(names)), labels, fontsize=8)
        ax.set_title("mIoU over truth classes" if metric == "miou_gt" else "strict mIoU", fontsize=10)
        ax.legend()
    axes[0].set_ylabel("validation mIoU")
    fig.suptitle("Cross-validation: mean ± std, dots = folds")
    save_figure(fig, path)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_stats(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return "--"
    if stats.get("std") is None:
        return f"{100 * stats['mean']:.2f}"
    return f"{100 * stats['mean']:.2f} $\\pm$ {100 * stats['std']:.2f}"


def to_latex(summary: dict[str, Any]) -> str:
    """The cross-validation table as a booktabs `table` for a paper (needs \\usepackage{booktabs}): per group
    mean ± sample std over folds of both mIoU means, with TTA, pixel accuracy and mDice, in %."""
    resolutions = {g.get("resolution", "train") for g in summary["groups"].values()}
    where = (
        "at each mask's own resolution"
        if resolutions == {"native"}
        else "at the model's input size"
        if resolutions == {"train"}
        else "MIXED resolutions"
    )
    lines = [
        "% written by heritage_seg.aggregate; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{Cross-validation over folds {_tex(summary['expected_folds'])}: mean $\\pm$ sample std in \\%, "
        f"dataset-level metrics {where}. mIoU$_\\mathrm{{gt}}$: over the classes in the validation truth; "
        "mIoU: strict (truth or prediction).}",
        "\\label{tab:cv-results}",
        "\\begin{tabular}{llcccccc}",
        "\\toprule",
        "Group & Family & mIoU$_\\mathrm{gt}$ & mIoU & mIoU$_\\mathrm{gt}$ (TTA) & mIoU (TTA) & Pixel acc. & "
        "mDice \\\\",
        "\\midrule",
    ]
    for g in summary["groups"].values():
        plain, tta = g["no_tta"], g["tta"] or {}
        cells = [
            _tex(g["label"]),
            _tex(g["family"]),
            _tex_stats(plain["miou_gt"]),
            _tex_stats(plain["miou"]),
            _tex_stats(tta.get("miou_gt")),
            _tex_stats(tta.get("miou")),
            _tex_stats(plain["pixel_accuracy"]),
            _tex_stats(plain["mean_dice"]),
        ]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines + _latex_damage_table(summary, where)) + "\n"


def _latex_damage_table(summary: dict[str, Any], where: str) -> list[str]:
    """Damage vs clean (and the coarse groups' mean where the label map has groups), as a second table."""
    groups = summary["groups"].values()
    if not any(g["no_tta"].get("binary") for g in groups):
        return []
    coarse = any(g["no_tta"].get("coarse") for g in groups)
    lines = [
        "",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{Any damage vs clean (the fine prediction collapsed to two classes) over folds "
        f"{_tex(summary['expected_folds'])}: mean $\\pm$ sample std in \\%, {where}."
        + (" Coarse mIoU: over the label map's groups of damage present in the truth." if coarse else "")
        + "}",
        "\\label{tab:cv-damage}",
        "\\begin{tabular}{ll" + "c" * (5 + coarse) + "}",
        "\\toprule",
        "Group & Family & Damage IoU & Dice & Precision & Recall & F1" + (" & Coarse mIoU" if coarse else "") + " \\\\",
        "\\midrule",
    ]
    for g in groups:
        b = g["no_tta"].get("binary") or {}
        cells = [_tex(g["label"]), _tex(g["family"])] + [
            _tex_stats(b.get(k)) for k in ("iou", "dice", "precision", "recall", "f1")
        ]
        if coarse:
            cells.append(_tex_stats((g["no_tta"].get("coarse") or {}).get("miou_gt")))
        lines.append(" & ".join(cells) + " \\\\")
    return lines + ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
