"""Dice + Focal with class weights from the training fold and the ignore index: smp's DiceLoss and FocalLoss,
computed without host-device synchronisations.

The numbers are smp's (multiclass, from logits; tests/test_losses.py compares them with smp's classes, values and
gradients). Written by hand because smp's versions stall a GPU every step: FocalLoss drops ignored pixels by
boolean indexing, twice per class (32 synchronisations per step with 16 classes), and both losses copy their
class weights (and Dice its class subset) from host memory on every call, each copy another synchronisation.
Here ignored pixels are masked out instead, and the weights are buffers that move with the module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

WEIGHT_STRATEGIES = ("inverse_sqrt", "inverse", "none")
ABSENT_CLASS_WEIGHTS = ("max", "zero")
DICE_CLASSES = ("all", "present")


def class_weights_from_counts(counts: Sequence[int], strategy: str = "inverse_sqrt",
                              max_ratio: float | None = None, absent: str = "max") -> np.ndarray:
    """Per-class weights from the training fold's pixel counts (ignore pixels never counted).

    Weights are normalised to mean 1 over the classes present in the fold. A class absent from the fold never
    appears as a target in training: `absent="max"` gives it the largest present weight (its weight then only
    scales its false-positive terms), `absent="zero"` leaves it out of the weighted Dice and Focal means
    altogether (see benchmarks/RESULTS.md, "Learning a thin class"). `max_ratio` optionally caps max/min weight.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if absent not in ABSENT_CLASS_WEIGHTS:
        raise ValueError(f"loss.absent_class_weight={absent}: choose one of {ABSENT_CLASS_WEIGHTS}")
    if strategy not in WEIGHT_STRATEGIES:
        raise ValueError(f"loss.class_weighting={strategy}: choose one of {WEIGHT_STRATEGIES}")
    present = counts > 0
    if not present.any():
        raise ValueError("class weights: the training fold has no annotated pixels")
    if strategy == "none":
        return np.where(present | (absent == "max"), 1.0, 0.0)
    freq = counts[present] / counts[present].sum()
    w = freq ** (-0.5 if strategy == "inverse_sqrt" else -1.0)
    w = w / w.mean()
    if max_ratio is not None:
        w = np.minimum(w, w.min() * max_ratio)
        w = w / w.mean()
    weights = np.full_like(counts, w.max() if absent == "max" else 0.0)
    weights[present] = w
    return weights


def dice_classes_from_counts(counts: Sequence[int], which: str = "all") -> list[int] | None:
    """`present`: the Dice term averages only the classes present in the training fold (None: all classes)."""
    if which not in DICE_CLASSES:
        raise ValueError(f"loss.dice_classes={which}: choose one of {DICE_CLASSES}")
    return None if which == "all" else [int(c) for c in np.flatnonzero(np.asarray(counts) > 0)]


def build_loss(loss_cfg: Mapping[str, Any], counts: Sequence[int]) -> tuple[nn.Module, dict[str, Any]]:
    """The loss a `conf/loss/*.yaml` describes, for a training fold with these per-class pixel counts.

    The config names strategies (`class_weighting: inverse_sqrt`, `absent_class_weight`, `dice_classes`); they
    become the numbers the loss module takes (`class_weights`, `dice_classes` ids) here, in one place. Returns
    the loss and what was used, for class_weights.json."""
    cfg = dict(loss_cfg)
    if "class_weights" in cfg:
        raise ValueError("loss.class_weights: renamed loss.class_weighting (inverse_sqrt | inverse | none); the "
                         "weights themselves are computed from the training fold")
    strategy = cfg.pop("class_weighting")
    absent = cfg.pop("absent_class_weight", "max")
    weights = class_weights_from_counts(counts, strategy, cfg.pop("class_weight_max_ratio", None), absent)
    dice_classes = dice_classes_from_counts(counts, cfg.pop("dice_classes", "all"))
    loss = instantiate(cfg, class_weights=weights.tolist(), dice_classes=dice_classes)
    record = {"strategy": strategy, "absent_class_weight": absent, "dice_classes": dice_classes,
              "train_pixel_counts": [int(c) for c in counts], "weights": weights.tolist()}
    return loss, record


class DiceFocalLoss(nn.Module):
    """dice_weight * Dice + focal_weight * Focal (+ ce_weight * cross-entropy), multiclass on logits, class
    weighted, all ignoring `ignore_index`. The ablations loss=dice|focal|ce are this with other weights.

    Dice is smp's soft Dice per class over the batch ((I + smooth) / ((|P| + |T|) / 2 + smooth)), 0 for classes
    with no target pixel in the batch, averaged over `dice_classes` (default all). Focal is smp's binary focal term
    per class, one class against the rest, averaged over the non-ignored pixels (a batch with none gives 0 where
    smp gives NaN). Both means are weighted by `class_weights`."""

    def __init__(self, class_weights: Sequence[float] | None = None, dice_weight: float = 0.5,
                 focal_weight: float = 0.5, gamma: float = 2.0, smooth: float = 1.0, ignore_index: int = 255,
                 ce_weight: float = 0.0, dice_classes: Sequence[int] | None = None):
        super().__init__()
        if dice_weight < 0 or focal_weight < 0 or ce_weight < 0 or not (dice_weight or focal_weight or ce_weight):
            raise ValueError("loss: dice_weight, focal_weight, ce_weight must be >= 0 and not all 0")
        weights = None if class_weights is None else torch.tensor([float(w) for w in class_weights])
        self.dice_weight, self.focal_weight, self.ce_weight = dice_weight, focal_weight, ce_weight
        self.gamma, self.smooth, self.ignore_index = float(gamma), float(smooth), int(ignore_index)
        # buffers, not persistent: they move with the module (no per-step copy) and checkpoints stay as they were
        self.register_buffer("class_weights", weights, persistent=False)
        self.register_buffer("dice_classes", None if dice_classes is None else
                             torch.tensor([int(c) for c in dice_classes], dtype=torch.long), persistent=False)
        self.ce = nn.CrossEntropyLoss(weight=weights, ignore_index=ignore_index)

    def _weighted_mean(self, per_class: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.class_weights
        if classes is not None:  # index_select with a device tensor: no synchronisation
            per_class = per_class.index_select(0, classes)
            weights = None if weights is None else weights.index_select(0, classes)
        if weights is None:
            return per_class.mean()
        return (per_class * weights).sum() / weights.sum()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # the losses' log/exp are unstable in half precision
        n, c = logits.shape[:2]
        flat = logits.reshape(n, c, -1)
        labels = target.reshape(n, -1).long()
        valid = labels != self.ignore_index  # (N, HW)
        weight = valid.unsqueeze(1).to(flat.dtype)  # (N, 1, HW)
        onehot = torch.zeros_like(flat).scatter_(1, (labels * valid).unsqueeze(1), 1.0) * weight  # 0 where ignored
        loss = logits.new_zeros(())
        if self.dice_weight:
            probs = flat.log_softmax(dim=1).exp() * weight
            intersection = (probs * onehot).sum((0, 2))
            cardinality = (probs + onehot).sum((0, 2))
            # smp's soft Dice is its Tversky score with alpha = beta = 0.5: (I + s) / ((|P| + |T|) / 2 + s)
            score = (intersection + self.smooth) / (0.5 * cardinality + self.smooth).clamp_min(1e-7)
            per_class = (1.0 - score) * (onehot.sum((0, 2)) > 0).to(score.dtype)  # no target pixel: 0
            loss = loss + self.dice_weight * self._weighted_mean(per_class, self.dice_classes)
        if self.focal_weight:
            logpt = F.binary_cross_entropy_with_logits(flat, onehot, reduction="none")
            focal = (1.0 - torch.exp(-logpt)).pow(self.gamma) * logpt
            per_class = (focal * weight).sum((0, 2)) / valid.sum().clamp_min(1)
            loss = loss + self.focal_weight * self._weighted_mean(per_class)
        if self.ce_weight:
            loss = loss + self.ce_weight * self.ce(logits, target.long())
        return loss
