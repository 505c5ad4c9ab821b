"""Image geometry shared by every layer: reflection padding of any size, and sizes capped on the longest side."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def reflection_steps(
    height: int, width: int, top: int, bottom: int, left: int, right: int
) -> Iterator[tuple[int, int, int, int, str]]:
    """The (top, bottom, left, right, mode) pads that reflection padding of any size takes, one after another:
    a reflection adds at most the image's size less one per side (np.pad / F.pad 'reflect'), so a larger pad
    repeats it; a side of 1 px has nothing to reflect, and its edge is repeated ('edge'). One plan for the
    numpy (`reflect_pad`) and torch (`sliding_window_probabilities`) paddings."""
    while top or bottom or left or right:
        if height == 1 or width == 1:
            yield top, bottom, left, right, "edge"
            return
        t, b, l, r = min(top, height - 1), min(bottom, height - 1), min(left, width - 1), min(right, width - 1)
        yield t, b, l, r, "reflect"
        height, width = height + t + b, width + l + r
        top, bottom, left, right = top - t, bottom - b, left - l, right - r


def reflect_pad(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """(H, W, ...) reflection padding that also works when the pad is larger than the image."""
    out = image
    for t, b, l, r, mode in reflection_steps(*image.shape[:2], top, bottom, left, right):
        out = np.pad(out, ((t, b), (l, r)) + ((0, 0),) * (out.ndim - 2), mode=mode)
    return out


def centred_pads(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that pad an image up to at least size x size, split evenly."""
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


def longest_side_scale(height: int, width: int, max_side: int | None) -> float:
    """The factor that brings the longest side to at most `max_side`: never above 1 (no upscaling); 1 if None."""
    return 1.0 if not max_side else min(1.0, max_side / max(height, width))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) times `scale`, rounded, at least 1 px a side."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_longest_side(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled so the longest side is at most `max_side`, aspect kept, never upscaled; unchanged if
    None. The one home of "longest side at most N": the crop protocol's cache, native-resolution scoring's cap
    (evaluate max_side=) and predict's scan size (through the same scale and `scaled_size`) all use it."""
    scale = longest_side_scale(height, width, max_side)
    return (height, width) if scale >= 1.0 else scaled_size(height, width, scale)


def true_box(flags: np.ndarray) -> tuple[slice, slice]:
    """The (rows, columns) slices of the bounding box of a 2-D boolean array's True pixels (it must have some),
    found from its row and column projections: no index array of the pixels themselves."""
    rows, cols = np.flatnonzero(flags.any(axis=1)), np.flatnonzero(flags.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
