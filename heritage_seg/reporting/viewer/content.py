"""What each kind of viewer page shows: a mapped scan (predict) and a scored image (evaluate's best/worst panels,
aggregate's comparison of encoders)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from heritage_seg.data.labels import LabelMap
from heritage_seg.reporting.html import hex_color
from heritage_seg.reporting.viewer.page import ClassLayer, FlagLayer, HeatLayer, ViewerContent

DIFFERENCE_COLOR = (255, 0, 255)  # magenta: in no ARTeFACT class colour, visible on most scans
DISAGREE_COLOR = (0, 255, 255)


def report_regions(report: Mapping[str, Any], labels: LabelMap) -> list[dict[str, Any]]:
    """The largest regions of every damage class of a scan's report (reporting/damage.class_report's
    `top_regions`), largest first."""
    palette = labels.palette()
    found = []
    for name, entry in report["damage"].items():
        for region in entry["top_regions"]:
            color = hex_color(palette[labels.names.index(name)])
            found.append({"class": name, "color": color, "pixels": region["pixels"], "bbox": region["bbox"]})
    return sorted(found, key=lambda r: -r["pixels"])


def scan_content(
    title: str,
    image: np.ndarray,
    mask: np.ndarray,
    labels: LabelMap,
    report: Mapping[str, Any],
    uncertainty: np.ndarray | None = None,
    dpi: float | None = None,
    links: list[dict[str, str]] | None = None,
) -> ViewerContent:
    """predict's page: the scan, its damage class by class, the uncertainty map where one was written."""
    layers: list[ClassLayer | FlagLayer | HeatLayer] = [ClassLayer("damage", "Damage (prediction)", mask)]
    if uncertainty is not None:
        layers.append(HeatLayer("uncertainty", "Uncertainty (views disagree)", uncertainty))
    damaged = report["damage_total"]["percent_of_object"]
    return ViewerContent(
        title=title,
        image=image,
        layers=layers,
        regions=report_regions(report, labels),
        dpi=dpi,
        subtitle=f"{damaged:.2f} % of the object damaged",
        links=links or [],
    )


def scored_content(
    title: str,
    image: np.ndarray,
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    labels: LabelMap,
    subtitle: str | None = None,
    links: list[dict[str, str]] | None = None,
    uncertainty: np.ndarray | None = None,
) -> ViewerContent:
    """An annotated image and one or more models' predictions of it: the truth and each prediction class by
    class, where each prediction differs from the truth and, with two predictions, where they disagree; the
    views' disagreement where it was computed (evaluate tta=true or an ensemble). Unannotated pixels
    (labels.ignore_index) count as no difference."""
    annotated = truth != labels.ignore_index
    layers: list[ClassLayer | FlagLayer | HeatLayer] = [ClassLayer("truth", "Annotation (truth)", truth, False)]
    many = len(predictions) > 1
    for i, (name, pred) in enumerate(predictions.items()):
        layer_id = f"pred{i}" if many else "pred"
        label = f"Prediction: {name}" if many else "Prediction"
        layers.append(ClassLayer(layer_id, label, pred, visible=i == 0))
    for i, (name, pred) in enumerate(predictions.items()):
        layer_id = f"diff{i}" if many else "diff"
        label = f"Wrong: {name} ≠ truth" if many else "Wrong: prediction ≠ truth"
        layers.append(FlagLayer(layer_id, label, (pred != truth) & annotated, DIFFERENCE_COLOR))
    if len(predictions) == 2:
        (a, pa), (b, pb) = predictions.items()
        layers.append(FlagLayer("disagree", f"{a} and {b} disagree", pa != pb, DISAGREE_COLOR))
    if uncertainty is not None:
        layers.append(HeatLayer("uncertainty", "Uncertainty (views disagree)", uncertainty))
    return ViewerContent(title=title, image=image, layers=layers, subtitle=subtitle, links=links or [])
