"""A scan's damage statistics: per-class pixels, connected regions and the largest one's bounding box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from heritage_seg.reporting.damage import class_report


def _reference_regions(mask: np.ndarray, class_id: int) -> tuple[int, int, list[int]]:
    """Whole-mask labelling, the plain way: (regions, largest size, largest bbox x0, y0, x1, y1)."""
    regions, n = ndimage.label(mask == class_id, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions.reshape(-1))[1:]
    largest = int(np.argmax(sizes))
    rows, cols = ndimage.find_objects(regions)[largest]
    return n, int(sizes[largest]), [cols.start, rows.start, cols.stop, rows.stop]


def _reference_top(mask: np.ndarray, class_id: int, k: int = 5) -> list[tuple[int, list[int]]]:
    """The k largest regions (size, bbox), largest first: what the viewer lists to zoom to."""
    regions, _ = ndimage.label(mask == class_id, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions.reshape(-1))[1:]
    boxes = ndimage.find_objects(regions)
    order = sorted(range(len(sizes)), key=lambda r: -sizes[r])[:k]
    return [(int(sizes[r]), [boxes[r][1].start, boxes[r][0].start, boxes[r][1].stop, boxes[r][0].stop]) for r in order]


@pytest.mark.parametrize("seed", [0, 1])
def test_regions_and_largest_bbox_equal_whole_mask_labelling(labels, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((240, 320), np.uint8)
    for class_id in (3, 9, 12):
        for _ in range(15):
            y, x = rng.integers(0, 230, 2)
            h, w = rng.integers(1, 40, 2)
            mask[y : y + h, x : x + w] = class_id
    mask[0, 319] = 9  # a one-pixel region in a corner
    mask[100:110, 0] = 255  # transparent pixels: not object
    report = class_report(mask, labels)
    for class_id in (3, 9, 12):
        entry = report["damage"][labels.names[class_id]]
        n, size, bbox = _reference_regions(mask, class_id)
        assert (entry["regions"], entry["largest_region_pixels"], entry["largest_region_bbox"]) == (n, size, bbox)
        assert entry["pixels"] == int((mask == class_id).sum())
        top = _reference_top(mask, class_id)
        assert [r["pixels"] for r in entry["top_regions"]] == [size for size, _ in top]
        assert {tuple(r["bbox"]) for r in entry["top_regions"]} == {tuple(box) for _, box in top}
        ys, xs = np.nonzero(mask == class_id)
        assert entry["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert report["transparent_pixels"] == 10 and report["object_pixels"] == mask.size - 10
    assert report["damage"][labels.names[4]] == {
        "pixels": 0,
        "percent_of_object": 0.0,
        "regions": 0,
        "largest_region_pixels": 0,
        "largest_region_bbox": None,
        "bbox": None,
        "top_regions": [],
    }


def test_diagonal_neighbours_are_one_region(labels):
    mask = np.zeros((5, 5), np.uint8)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 5
    entry = class_report(mask, labels)["damage"][labels.names[5]]
    assert (entry["regions"], entry["largest_region_pixels"], entry["largest_region_bbox"]) == (1, 3, [1, 1, 4, 4])
