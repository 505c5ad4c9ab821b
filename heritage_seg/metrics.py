"""Every reported segmentation metric from ONE dataset-level confusion matrix (rows = truth, cols = prediction).

As mmsegmentation does: counts are accumulated over every pixel of the set first, then turned into metrics.
A class absent from both ground truth and prediction has undefined IoU/Dice (NaN) and is left out of the
means; it is never counted as 0 or 1.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_numpy(confmat) -> np.ndarray:
    if isinstance(confmat, torch.Tensor):
        confmat = confmat.detach().cpu().numpy()
    return np.asarray(confmat, dtype=np.float64)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full_like(num, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def segmentation_metrics(confmat) -> dict[str, np.ndarray | float]:
    cm = _as_numpy(confmat)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    fp, fn = pred - tp, gt - tp
    iou = _divide(tp, tp + fp + fn)
    dice = _divide(2 * tp, 2 * tp + fp + fn)
    precision = _divide(tp, pred)
    recall = _divide(tp, gt)
    total = cm.sum()
    return {
        "iou": iou,
        "dice": dice,
        "precision": precision,
        "recall": recall,
        "f1": dice,  # per class, F1 and Dice are the same number
        "gt_pixels": gt,
        "pred_pixels": pred,
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mean_dice": float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
    }
