"""What a damage map says about one scan: pixels and share of the object per class, connected regions and the
largest one (report.json), and the same as rows of the batch's report.csv."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from heritage_seg.core.geometry import true_box
from heritage_seg.data.labels import LabelMap
from heritage_seg.inference.uncertainty import MEASURE as UNCERTAINTY_MEASURE

TOP_REGIONS = 5  # per class, in report.json's `top_regions` (the viewer lists them)
BBOX_FIELDS = ["largest_region_bbox_x0", "largest_region_bbox_y0", "largest_region_bbox_x1", "largest_region_bbox_y1"]
CSV_FIELDS = [
    "image",
    "class",
    "kind",
    "pixels",
    "percent_of_object",
    "regions",
    "largest_region_pixels",
    *BBOX_FIELDS,
    # with an uncertainty map (tta=true or an ensemble), else empty: the class's pixels' mean uncertainty and
    # share above the threshold; the scan's mean over its object and share of its damage pixels above it
    "mean_uncertainty",
    "uncertain_percent",
    "scan_mean_uncertainty",
    "scan_uncertain_damage_percent",
]


def class_report(mask: np.ndarray, labels: LabelMap) -> dict[str, Any]:
    """Per class: pixels, % of the object, connected regions (8-connected), largest region and its bbox.
    Pixels marked `labels.ignore_index` (transparent in a cut-out) are not object and not counted."""
    counts = np.bincount(mask.reshape(-1), minlength=256)
    total = int(counts[: labels.num_classes].sum())
    classes = {}
    for class_id, name in enumerate(labels.names):
        entry: dict[str, Any] = {
            "pixels": int(counts[class_id]),
            "percent_of_object": round(100.0 * counts[class_id] / max(total, 1), 4),
        }
        if class_id != labels.clean_index:
            entry.update(
                _regions(mask == class_id)
                if counts[class_id]
                else {
                    "regions": 0,
                    "largest_region_pixels": 0,
                    "largest_region_bbox": None,
                    "bbox": None,
                    "top_regions": [],
                }
            )
        classes[name] = entry
    damage = total - int(counts[labels.clean_index])
    return {
        "object_pixels": total,
        "clean": classes.pop(labels.clean_name),
        "clean_class": labels.clean_name,
        "damage_total": {"pixels": damage, "percent_of_object": round(100.0 * damage / max(total, 1), 4)},
        "damage": classes,
        "transparent_pixels": int(counts[labels.ignore_index]),
        "background": "not predicted: the model has no background class, so every pixel of the scan counts as "
        "object, except transparent pixels of a cut-out (alpha 0); crop mounts and frames first for "
        "exact percentages",
    }


def uncertainty_report(
    mask: np.ndarray, uncertainty: np.ndarray, labels: LabelMap, threshold: float, views: int, rows: int = 512
) -> dict[str, Any]:
    """The scan's mean uncertainty (0..1, over its object pixels), the share of its damage pixels whose
    uncertainty is at least `threshold`, and both per class; `uncertainty` is the uint8 map (x 255). Counted
    in strips of rows: a 12,000 x 9,000 scan never gets a float copy of its map."""
    cut = int(np.ceil(threshold * 255))
    pixels = np.zeros(256, dtype=np.int64)
    total = np.zeros(256, dtype=np.float64)
    uncertain = np.zeros(256, dtype=np.int64)
    for top in range(0, mask.shape[0], rows):
        m, u = mask[top : top + rows].reshape(-1), uncertainty[top : top + rows].reshape(-1)
        pixels += np.bincount(m, minlength=256)
        total += np.bincount(m, weights=u, minlength=256)
        uncertain += np.bincount(m[u >= cut], minlength=256)
    n = labels.num_classes
    damage = [c for c in range(n) if c != labels.clean_index]
    per_class = {
        name: {
            "mean": round(float(total[c] / pixels[c] / 255), 4) if pixels[c] else None,
            "uncertain_percent": round(100.0 * uncertain[c] / pixels[c], 4) if pixels[c] else None,
        }
        for c, name in enumerate(labels.names)
    }
    damaged = int(pixels[damage].sum())
    return {
        "measure": UNCERTAINTY_MEASURE,
        "views": views,
        "threshold": threshold,
        "mean": round(float(total[:n].sum() / max(int(pixels[:n].sum()), 1) / 255), 4),
        "damage_uncertain_percent": round(100.0 * int(uncertain[damage].sum()) / damaged, 4) if damaged else None,
        "per_class": per_class,
    }


def binary_head_report(head_damage: np.ndarray, mask: np.ndarray, labels: LabelMap, rows: int = 512) -> dict[str, Any]:
    """How the damage/clean head's map compares with the fine classes' damage: each one's share of the object
    pixels, and their agreement (IoU of the two damage areas). Counted in strips of rows, without whole-scan copies."""
    counts = np.zeros(4, dtype=np.int64)  # (fine damage, head damage) as 2 * fine + head
    damage = np.ones(256, dtype=bool)
    damage[[labels.clean_index, labels.ignore_index]] = False
    inside = np.zeros(256, dtype=bool)
    inside[: labels.num_classes] = True
    for top in range(0, mask.shape[0], rows):
        m, h = mask[top : top + rows], head_damage[top : top + rows]
        keep = inside[m]
        counts += np.bincount((2 * damage[m][keep] + h[keep]).astype(np.int64), minlength=4)
    pixels = int(counts.sum())
    union = int(counts[1:].sum())
    return {
        "head_damage_pixels": int(counts[1] + counts[3]),
        "head_damage_percent": round(100.0 * (counts[1] + counts[3]) / pixels, 4) if pixels else None,
        "fine_damage_percent": round(100.0 * (counts[2] + counts[3]) / pixels, 4) if pixels else None,
        "agreement_iou": round(float(counts[3]) / union, 4) if union else None,
    }


def _regions(binary: np.ndarray) -> dict[str, Any]:
    """Connected regions (8-connected) of one class, counted inside the class's bounding box only and with
    per-region sizes taken over the class's own pixels: damage is usually a small part of a scan, and whole-scan
    int32 label maps cost ~0.15 s per class on a 4096² scan (benchmarks/RESULTS.md, "GPU path")."""
    box = true_box(binary)
    y0, x0 = box[0].start, box[1].start
    crop = binary[box]
    regions, n = ndimage.label(crop, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions[crop])  # index 0 unused: every pixel of the class is in a region >= 1
    order = np.argsort(-sizes[1:], kind="stable")[:TOP_REGIONS] + 1  # the largest first, ties by position
    boxes = ndimage.find_objects(regions, max_label=int(order.max()))
    top = []
    for r in order:
        rows_r, cols_r = boxes[r - 1]
        bbox = [x0 + cols_r.start, y0 + rows_r.start, x0 + cols_r.stop, y0 + rows_r.stop]  # x0, y0, x1, y1 (end excl.)
        top.append({"pixels": int(sizes[r]), "bbox": bbox})
    return {
        "regions": int(n),
        "largest_region_pixels": top[0]["pixels"],
        "largest_region_bbox": top[0]["bbox"],
        "bbox": [x0, y0, x0 + crop.shape[1], y0 + crop.shape[0]],  # all the class's pixels
        "top_regions": top,  # the viewer's list of regions to zoom to
    }


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    spread = report.get("uncertainty")
    scan = (
        {
            "scan_mean_uncertainty": spread["mean"],
            "scan_uncertain_damage_percent": spread["damage_uncertain_percent"],
        }
        if spread
        else {}
    )

    def uncertainty(name: str) -> dict[str, Any]:
        if not spread:
            return {}
        entry = spread["per_class"][name]
        return {"mean_uncertainty": entry["mean"], "uncertain_percent": entry["uncertain_percent"], **scan}

    clean = report["clean_class"]
    rows = [{"image": report["image"], "class": clean, "kind": "clean", **report["clean"], **uncertainty(clean)}]
    for name, entry in report["damage"].items():
        bbox = entry.get("largest_region_bbox") or [None] * 4
        rows.append(
            {
                "image": report["image"],
                "class": name,
                "kind": "damage",
                "pixels": entry["pixels"],
                "percent_of_object": entry["percent_of_object"],
                "regions": entry["regions"],
                "largest_region_pixels": entry["largest_region_pixels"],
                **dict(zip(BBOX_FIELDS, bbox)),
                **uncertainty(name),
            }
        )
    return rows
