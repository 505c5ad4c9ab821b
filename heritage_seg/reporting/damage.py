"""What a damage map says about one scan: pixels and share of the object per class, connected regions and the
largest one (report.json), and the same as rows of the batch's report.csv."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from heritage_seg.data.labels import LabelMap

CSV_FIELDS = [
    "image",
    "class",
    "kind",
    "pixels",
    "percent_of_object",
    "regions",
    "largest_region_pixels",
    "largest_region_bbox_x0",
    "largest_region_bbox_y0",
    "largest_region_bbox_x1",
    "largest_region_bbox_y1",
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
                else {"regions": 0, "largest_region_pixels": 0, "largest_region_bbox": None}
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


def _regions(binary: np.ndarray) -> dict[str, Any]:
    """Connected regions (8-connected) of one class, counted inside the class's bounding box only and with
    per-region sizes taken over the class's own pixels: damage is usually a small part of a scan, and whole-scan
    int32 label maps cost ~0.15 s per class on a 4096² scan (benchmarks/RESULTS.md, "GPU path")."""
    rows = np.flatnonzero(binary.any(axis=1))
    cols = np.flatnonzero(binary.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])
    crop = binary[y0 : int(rows[-1]) + 1, x0 : int(cols[-1]) + 1]
    regions, n = ndimage.label(crop, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions[crop])  # index 0 unused: every pixel of the class is in a region >= 1
    largest = int(np.argmax(sizes[1:])) + 1
    inside = regions == largest
    ys, xs = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return {
        "regions": int(n),
        "largest_region_pixels": int(sizes[largest]),
        "largest_region_bbox": [x0 + int(xs[0]), y0 + int(ys[0]), x0 + int(xs[-1]) + 1, y0 + int(ys[-1]) + 1],
    }  # x0, y0, x1, y1 (end exclusive)


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"image": report["image"], "class": report["clean_class"], "kind": "clean", **report["clean"]}]
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
                **dict(zip(CSV_FIELDS[-4:], bbox)),
            }
        )
    return rows
