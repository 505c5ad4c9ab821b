"""Dice + Focal on smp's losses, with class weights from the training fold and the ignore index.

smp's DiceLoss and FocalLoss already handle `ignore_index` and `class_weights`; only the weighted sum of the
two terms and the class-weight computation are written here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss
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
    weighted, all ignoring `ignore_index`. The ablations loss=dice|focal|ce are this with other weights."""

    def __init__(self, class_weights: Sequence[float] | None = None, dice_weight: float = 0.5,
                 focal_weight: float = 0.5, gamma: float = 2.0, smooth: float = 1.0, ignore_index: int = 255,
                 ce_weight: float = 0.0, dice_classes: Sequence[int] | None = None):
        super().__init__()
        if dice_weight < 0 or focal_weight < 0 or ce_weight < 0 or not (dice_weight or focal_weight or ce_weight):
            raise ValueError("loss: dice_weight, focal_weight, ce_weight must be >= 0 and not all 0")
        weights = None if class_weights is None else [float(w) for w in class_weights]
        self.dice_weight, self.focal_weight, self.ce_weight = dice_weight, focal_weight, ce_weight
        self.dice = DiceLoss("multiclass", classes=None if dice_classes is None else list(dice_classes),
                             from_logits=True, smooth=smooth, ignore_index=ignore_index, class_weights=weights)
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
