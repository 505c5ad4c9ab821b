"""Class probabilities at the model's input size upsampled bilinearly to a scan's or a mask's own size, in bounded
strips of rows: what native-resolution scoring counts and what predict maps squash-trained models with.

mmsegmentation resizes the prediction back to the ground truth's size before counting IoU; a mask squashed to
the training size drops or fattens 3-px cracks and hairs, so only this figure is the IoU a conservator gets on
the object. `F.interpolate` would build the whole (C, H, W) float map (16 classes of a 100-Mpx scan: 6.4 GB);
here the same bilinear weights (align_corners=False) are applied one strip of output rows at a time, each
strip reading only the few input rows it needs.
"""

from __future__ import annotations

import numpy as np
import torch

from heritage_seg.inference.uncertainty import to_uint8


def _axis(out_len: int, in_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of bilinear resizing along one axis, as `F.interpolate(align_corners=False)`."""
    scale = in_len / out_len
    src = ((torch.arange(out_len, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=in_len - 1)
    high = (low + 1).clamp(max=in_len - 1)
    frac = (src - low).to(torch.float32)
    return low, high, frac


def upsampled_strips(probs: torch.Tensor, height: int, width: int, rows_per_strip: int = 64):
    """Yield (top, strip) with strip = bilinear(probs)[:, top:top + rows] for the (C, h, w) map `probs` resized
    to (height, width). Each strip is built from only the input rows it needs, so at most a few
    (C, rows_per_strip, width) float maps exist at a time: 16 classes x 64 rows x 12,000 px = 49 MB each."""
    channels, in_h, in_w = probs.shape
    col_lo, col_hi, col_w = _axis(width, in_w, probs.device)
    row_lo, row_hi, row_w = _axis(height, in_h, probs.device)
    for top in range(0, height, rows_per_strip):
        end = min(top + rows_per_strip, height)
        first, last = int(row_lo[top]), int(row_hi[end - 1])  # input rows this strip reads (indices are sorted)
        rows = probs[:, first : last + 1]
        wide = rows[:, :, col_lo] * (1 - col_w) + rows[:, :, col_hi] * col_w  # (C, few rows, width)
        w = row_w[top:end].view(1, -1, 1)
        yield top, wide[:, row_lo[top:end] - first] * (1 - w) + wide[:, row_hi[top:end] - first] * w


def native_class_map(
    probs: torch.Tensor, height: int, width: int, uncertainty: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(C, h, w) probabilities -> (height, width) uint8 class ids, confidence (max probability x 255) and, with
    `uncertainty` (`probs` has the views' disagreement as a last channel), that disagreement x 255 (else None);
    upsampled bilinearly strip by strip: predict's whole-scan path for squash-trained models, the same
    upsampling that native-resolution evaluation scores."""
    classes = np.empty((height, width), dtype=np.uint8)
    confidence = np.empty((height, width), dtype=np.uint8)
    spread = np.empty((height, width), dtype=np.uint8) if uncertainty else None
    for top, strip in upsampled_strips(probs, height, width):
        rows = slice(top, top + strip.shape[1])
        if spread is not None:
            spread[rows] = to_uint8(strip[-1]).cpu().numpy()
            strip = strip[:-1]
        best, ids = strip.max(dim=0)
        classes[rows] = ids.to(torch.uint8).cpu().numpy()
        confidence[rows] = (best.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return classes, confidence, spread
