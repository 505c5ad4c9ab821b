"""Dice + Focal on smp's losses, with class weights from the training fold and the ignore index.

smp's DiceLoss and FocalLoss already handle `ignore_index` and `class_weights`; only the weighted sum of the
two terms and the class-weight computation are written here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss
from torch import nn

WEIGHT_STRATEGIES = ("inverse_sqrt", "inverse", "none")


def class_weights_from_counts(counts: Sequence[int], strategy: str = "inverse_sqrt",
                              max_ratio: float | None = None) -> np.ndarray:
    """Per-class weights from the training fold's pixel counts (ignore pixels never counted).

    Weights are normalised to mean 1 over the classes present in the fold. A class absent from the fold gets
    the largest present weight: it never appears as a target in training, so its weight only scales its
    false-positive term, and it must not dominate. `max_ratio` optionally caps max/min weight.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if strategy == "none":
        return np.ones_like(counts)
    if strategy not in WEIGHT_STRATEGIES:
        raise ValueError(f"loss.class_weights={strategy}: choose one of {WEIGHT_STRATEGIES}")
    present = counts > 0
    if not present.any():
        raise ValueError("class weights: the training fold has no annotated pixels")
    freq = counts[present] / counts[present].sum()
    w = freq ** (-0.5 if strategy == "inverse_sqrt" else -1.0)
    w = w / w.mean()
    if max_ratio is not None:
        w = np.minimum(w, w.min() * max_ratio)
        w = w / w.mean()
    weights = np.full_like(counts, w.max())
    weights[present] = w
    return weights


class DiceFocalLoss(nn.Module):
    """dice_weight * Dice + focal_weight * Focal (+ ce_weight * cross-entropy), multiclass on logits, class
    weighted, all ignoring `ignore_index`. The ablations loss=dice|focal|ce are this with other weights."""

    def __init__(self, class_weights: Sequence[float] | None = None, dice_weight: float = 0.5,
                 focal_weight: float = 0.5, gamma: float = 2.0, smooth: float = 1.0, ignore_index: int = 255,
                 ce_weight: float = 0.0):
        super().__init__()
        if dice_weight < 0 or focal_weight < 0 or ce_weight < 0 or not (dice_weight or focal_weight or ce_weight):
            raise ValueError("loss: dice_weight, focal_weight, ce_weight must be >= 0 and not all 0")
        weights = None if class_weights is None else [float(w) for w in class_weights]
        self.dice_weight, self.focal_weight, self.ce_weight = dice_weight, focal_weight, ce_weight
        self.dice = DiceLoss("multiclass", from_logits=True, smooth=smooth, ignore_index=ignore_index,
                             class_weights=weights)
        self.focal = FocalLoss("multiclass", gamma=gamma, ignore_index=ignore_index, class_weights=weights)
        self.ce = nn.CrossEntropyLoss(weight=None if weights is None else torch.tensor(weights),
                                      ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # the losses' log/exp are unstable in half precision
        loss = logits.new_zeros(())
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        if self.focal_weight:
            loss = loss + self.focal_weight * self.focal(logits, target)
        if self.ce_weight:
            loss = loss + self.ce_weight * self.ce(logits, target)
        return loss
