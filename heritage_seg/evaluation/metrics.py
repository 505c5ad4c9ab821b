"""Every reported segmentation metric from ONE dataset-level confusion matrix (rows = truth, cols = prediction).

The damage-vs-clean and coarse-group figures come from the same matrix, collapsed (`collapse`): a pixel of one
damage class predicted as another is right in the binary task, and right in the coarse task when both classes
are in the same group. No extra head is needed for them.

As mmsegmentation does: counts are accumulated over every pixel of the set first, then turned into metrics.
A class absent from both ground truth and prediction has undefined IoU/Dice (NaN) and is left out of the
means; it is never counted as 0 or 1.

Two means are reported:
- `miou` (strict, mmsegmentation's figure): over every class present in the ground truth OR the prediction,
  so a class absent from the set but predicted somewhere counts as IoU 0.
- `miou_gt`: over the classes present in the ground truth only. Stray pixels of an absent class still cost,
  as false negatives of the true class under them, but a handful of them can no longer outweigh finding a
  rare class. It is the checkpoint-selection and early-stopping criterion (docs/design/honesty.md, "The best
  epoch is chosen on val/mIoU_gt"): the strict mean rewards a model that never predicts rare damage over one that
  finds it.
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


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


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
        "miou": _nanmean(iou),
        "miou_gt": _nanmean(iou[gt > 0]),
        "mean_dice": _nanmean(dice),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
    }


def collapse(confmat, lookup, size: int) -> np.ndarray:
    """The (size, size) matrix of a coarser task: rows and columns of the fine classes summed by `lookup[class]`."""
    cm = _as_numpy(confmat)
    member = np.zeros((cm.shape[0], size))
    member[np.arange(cm.shape[0]), np.asarray(lookup)] = 1.0
    return member.T @ cm @ member


def binary_metrics(confmat, clean_index: int) -> dict[str, float]:
    """ "Any damage" against the clean class: IoU, Dice (= F1), precision, recall of the damage pixels, the binary
    pixel accuracy, and the pixel counts; NaN where undefined (no damage in truth and prediction)."""
    cm = _as_numpy(confmat)
    lookup = (np.arange(cm.shape[0]) != clean_index).astype(np.int64)
    two = collapse(cm, lookup, 2)
    tp, fp, fn, tn = two[1, 1], two[0, 1], two[1, 0], two[0, 0]
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, two.sum()),
        "damage_pixels": int(tp + fn),
        "predicted_damage_pixels": int(tp + fp),
        "pixels": int(two.sum()),
    }


def coarse_metrics(confmat, lookup, names) -> dict[str, np.ndarray | float]:
    """The segmentation metrics of the coarse task (`names[lookup[class]]`): per coarse class and the means over
    the damage groups, i.e. without the clean class (index 0), which the binary block reports."""
    coarse = segmentation_metrics(collapse(confmat, lookup, len(names)))
    groups = np.arange(1, len(names))
    iou, gt = coarse["iou"][groups], coarse["gt_pixels"][groups]
    return {**coarse, "miou": _nanmean(iou), "miou_gt": _nanmean(iou[gt > 0])}


def count_confusion(
    target: torch.Tensor, pred: torch.Tensor, num_classes: int, ignore_index: int, per_image: bool = False
) -> torch.Tensor:
    """Confusion counts (rows = truth) of class-id tensors, on their device in one scatter-add: (C, C), or
    (N, C, C) with `per_image` for (N, ...) inputs (image i's pairs offset by i*C*C). Pixels marked
    `ignore_index` go to one spare bin: no masked selection or bincount, which each wait for the GPU (and
    bincount has no deterministic CUDA implementation)."""
    cc = num_classes * num_classes
    index = target.long() * num_classes + pred.long()
    n = 1
    if per_image:
        n = target.shape[0]
        index = index + torch.arange(n, device=index.device).view(n, *[1] * (index.dim() - 1)) * cc
    index = torch.where(target == ignore_index, n * cc, index).reshape(-1)
    counts = torch.zeros(n * cc + 1, dtype=torch.long, device=index.device)
    counts.scatter_add_(0, index, torch.ones_like(index))
    shape = (n, num_classes, num_classes) if per_image else (num_classes, num_classes)
    return counts[:-1].view(shape)
