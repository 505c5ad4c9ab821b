"""Scoring at the annotation's own resolution: the model's class probabilities at its input size, upsampled
bilinearly to the original mask's size in bounded strips of rows, counted against the original mask.

mmsegmentation resizes the prediction back to the ground truth's size before counting IoU; a mask squashed to
the training size drops or fattens 3-px cracks and hairs, so only this figure is the IoU a conservator gets on
the object. `F.interpolate` would build the whole (C, H, W) float map (16 classes of a 100-Mpx scan: 6.4 GB);
here the same bilinear weights (align_corners=False) are applied one strip of output rows at a time, each
strip reading only the few input rows it needs.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from heritage_seg.core.geometry import fit_longest_side
from heritage_seg.evaluation.calibration import Calibration
from heritage_seg.evaluation.metrics import count_confusion
from heritage_seg.inference.uncertainty import to_uint8
from heritage_seg.inference.upsample import upsampled_strips


def native_confusion(
    probs: torch.Tensor,
    mask: torch.Tensor,
    num_classes: int,
    ignore_index: int,
    rows_per_strip: int = 64,
    prediction: np.ndarray | None = None,
    calibration: Calibration | None = None,
    uncertainty: np.ndarray | None = None,
) -> torch.Tensor:
    """(C, C) confusion matrix (rows = truth) of argmax(bilinear(probs) at the mask's size) against `mask`
    ((H, W) class ids, `ignore_index` not counted), accumulated strip by strip on `probs`' device. With
    `prediction` (an (H, W) uint8 array) the class map at the mask's size is also written there. `probs` may
    carry the views' disagreement as a last channel (num_classes + 1): it is upsampled alike, counted by
    `calibration` (which counts the confidences too) and, with `uncertainty` ((H, W) uint8), written x 255."""
    height, width = mask.shape
    total = torch.zeros(num_classes, num_classes, dtype=torch.long, device=probs.device)
    for top, strip in upsampled_strips(probs, height, width, rows_per_strip):
        rows = slice(top, top + strip.shape[1])
        spread = strip[num_classes] if strip.shape[0] > num_classes else None
        strip = strip[:num_classes]
        pred = strip.argmax(dim=0)
        target = mask[rows].to(probs.device, non_blocking=True)
        total += count_confusion(target, pred, num_classes, ignore_index)
        if calibration is not None:
            calibration.add(strip, target, ignore_index, spread)
        if prediction is not None:
            prediction[rows] = pred.to(torch.uint8).cpu().numpy()
        if uncertainty is not None and spread is not None:
            uncertainty[rows] = to_uint8(spread).cpu().numpy()
    return total


RESOLUTIONS = ("native", "train")


def check_resolution(resolution: str, max_side: int | None) -> bool:
    """`resolution`: native (score at the masks' stored size) or train (at the model's input size, the seed's
    figure); True for native. `max_side`: null, or a positive cap on the longest side of native masks."""
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"resolution={resolution}: choose native (the masks' own size) or train (the model's input "
            "size, as the seed's table)"
        )
    if max_side is not None and (not isinstance(max_side, int) or max_side < 32):
        raise ValueError(f"max_side={max_side}: null (no cap) or an integer >= 32 (pixels of the longest side)")
    return resolution == "native"


def capped_mask(mask: np.ndarray, max_side: int | None) -> np.ndarray:
    """A class-id mask with its longest side at most `max_side` (nearest neighbour); as it is if None."""
    height, width = fit_longest_side(*mask.shape, max_side)
    if (height, width) == mask.shape:
        return mask
    return np.asarray(Image.fromarray(np.asarray(mask)).resize((width, height), Image.Resampling.NEAREST))


def validation_masks(datamodule, max_side: int | None = None):
    """Data-set index -> the image's class-id mask at its stored resolution (capped by `max_side`), for a set-up
    ArtefactDataModule: read from its cache, which keeps every mask as stored, so no annotation is decoded again."""
    native = datamodule.data.native_masks
    return lambda index: capped_mask(np.array(native[index]), max_side)  # a copy: the cache is read-only
