"""Pre-annotations out and corrected annotations back: COCO 1.0 instance files with RLE masks.

Why COCO: CVAT imports and exports it ("COCO 1.0": masks as run-length encodings with `iscrowd: 1`, polygons
otherwise), Label Studio and most other tools convert from it, and pycocotools, the format's maintained
reference library, encodes and decodes its masks exactly. One annotation per damage class present in a scan
(all of its pixels, `iscrowd: 1`); the clean class is the background and has no category; pixels outside the
object (transparent in a cut-out) are an `ignore` region (`iscrowd: 1`, category `ignore`) so they come back as
not annotated. Category ids are the label map's class indices, names its class names: what comes back is mapped
by NAME, so a file edited in a tool that renumbers categories still imports right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as rle

from heritage_seg.data.labels import LabelMap

IGNORE_CATEGORY = "ignore"  # pixels not annotated (outside the object); the label map's ignore value on import


def categories(labels: LabelMap) -> list[dict[str, Any]]:
    damage = [
        {"id": c, "name": n, "supercategory": "damage"} for c, n in enumerate(labels.names) if c != labels.clean_index
    ]
    return damage + [{"id": labels.ignore_index, "name": IGNORE_CATEGORY, "supercategory": "not annotated"}]


def _encode(binary: np.ndarray) -> tuple[dict[str, Any], list[float]]:
    """A binary mask as compressed COCO RLE (counts as text, for JSON), and its bounding box."""
    encoded = rle.encode(np.asfortranarray(binary.astype(np.uint8)))
    box = [float(v) for v in rle.toBbox(encoded)]
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}, box


def mask_annotations(mask: np.ndarray, labels: LabelMap, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """The COCO annotations of one class-id mask: one RLE per damage class present, and the ignore region."""
    out = []
    present = np.flatnonzero(np.bincount(mask.reshape(-1), minlength=256))
    for value in present:
        if value == labels.clean_index or (value >= labels.num_classes and value != labels.ignore_index):
            continue
        binary = mask == value
        segmentation, box = _encode(binary)
        out.append(
            {
                "id": first_id + len(out),
                "image_id": image_id,
                "category_id": int(value),
                "segmentation": segmentation,
                "area": int(binary.sum()),
                "bbox": box,
                "iscrowd": 1,
            }
        )
    return out


def read_coco(path: Path) -> dict[str, Any]:
    """A COCO instances file, checked for what the import needs; errors name the file."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"annotations={path}: not a readable COCO JSON file ({err})") from err
    missing = [key for key in ("images", "annotations", "categories") if key not in document]
    if missing:
        raise ValueError(f"annotations={path}: not a COCO instances file (no {', '.join(missing)})")
    return document


def decode(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """(height, width) bool mask of a COCO segmentation: RLE (compressed or not) or polygons."""
    try:
        if isinstance(segmentation, dict):
            if list(segmentation.get("size", [])) != [height, width]:
                raise ValueError(f"its RLE is {segmentation.get('size')} (height, width), the image {height} x {width}")
            counts = segmentation["counts"]
            if isinstance(counts, list):  # uncompressed RLE, as CVAT writes it
                encoded = rle.frPyObjects(segmentation, height, width)
            else:
                encoded = {
                    "size": [height, width],
                    "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
                }
            return rle.decode(encoded).astype(bool)
        parts = rle.frPyObjects(segmentation, height, width)  # polygons: a list of [x1, y1, x2, y2, ...]
        return rle.decode(rle.merge(parts)).astype(bool)
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{where}: segmentation is neither RLE nor polygons ({err})") from err
