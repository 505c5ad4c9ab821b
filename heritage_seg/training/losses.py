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
from torch import nn

from heritage_seg.core.cli import instantiate_or_user_error

WEIGHT_STRATEGIES = ("inverse_sqrt", "inverse", "none")
ABSENT_CLASS_WEIGHTS = ("max", "zero")
DICE_CLASSES = ("all", "present")


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    """One message for a rule the loss config names: the constructor checks it (the config fails before any data
    is loaded), and so do the functions that apply it, called alone."""
    if value not in choices:
        raise ValueError(f"loss.{option}={value}: choose one of {choices}")


def class_weights_from_counts(
    counts: Sequence[int], strategy: str = "inverse_sqrt", max_ratio: float | None = None, absent: str = "max"
) -> np.ndarray:
    """Per-class weights from the training fold's pixel counts (ignore pixels never counted).

    Weights are normalised to mean 1 over the classes present in the fold. A class absent from the fold never
    appears as a target in training: `absent="max"` gives it the largest present weight (its weight then only
    scales its false-positive terms), `absent="zero"` leaves it out of the weighted Dice and Focal means
    altogether (see benchmarks/RESULTS.md, "Learning a thin class"). `max_ratio` optionally caps max/min weight.
    """
    counts = np.asarray(counts, dtype=np.float64)
    _check_choice("absent_class_weight", absent, ABSENT_CLASS_WEIGHTS)
    _check_choice("class_weighting", strategy, WEIGHT_STRATEGIES)
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
    _check_choice("dice_classes", which, DICE_CLASSES)
    return None if which == "all" else [int(c) for c in np.flatnonzero(np.asarray(counts) > 0)]


def build_loss(loss_cfg: Mapping[str, Any], counts: Sequence[int]) -> tuple[nn.Module, dict[str, Any]]:
    """The loss a `conf/loss/*.yaml` builds (it instantiates on its own), its class weights and Dice classes
    fitted to a training fold with these per-class pixel counts. Returns the loss and what was used, for
    class_weights.json (and the checkpoint, so a loaded module rebuilds the same loss)."""
    loss = instantiate_or_user_error(loss_cfg)
    return loss, loss.fit_class_weights(counts)


class DiceFocalLoss(nn.Module):
    """dice_weight * Dice + focal_weight * Focal (+ ce_weight * cross-entropy), multiclass on logits, class
    weighted, all ignoring `ignore_index`. The ablations loss=dice|focal|ce are this with other weights.

    Dice is smp's soft Dice per class over the batch ((I + smooth) / ((|P| + |T|) / 2 + smooth)), 0 for classes
    with no target pixel in the batch, averaged over `dice_classes`. Focal is smp's binary focal term per class,
    one class against the rest, averaged over the non-ignored pixels (a batch with none gives 0 where smp gives
    NaN). Both means are weighted by the class weights.

    The weights and the Dice classes are either given as numbers (`class_weights`, `dice_classes` as class ids)
    or named as rules (`class_weighting`, `class_weight_max_ratio`, `absent_class_weight`, `dice_classes:
    present|all`) that `fit_class_weights` turns into numbers from a training fold's pixel counts; until then the
    classes weigh the same and Dice averages all of them."""

    def __init__(
        self,
        dice_weight: float = 0.5,
        focal_weight: float = 0.5,
        ce_weight: float = 0.0,
        gamma: float = 2.0,
        smooth: float = 1.0,
        ignore_index: int = 255,
        class_weighting: str = "inverse_sqrt",
        class_weight_max_ratio: float | None = None,
        absent_class_weight: str = "max",
        dice_classes: str | Sequence[int] | None = "all",
        class_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        if dice_weight < 0 or focal_weight < 0 or ce_weight < 0 or not (dice_weight or focal_weight or ce_weight):
            raise ValueError("loss: dice_weight, focal_weight, ce_weight must be >= 0 and not all 0")
        if isinstance(class_weights, str):
            raise ValueError(
                "loss.class_weights: renamed loss.class_weighting (inverse_sqrt | inverse | none); the "
                "weights themselves are computed from the training fold"
            )
        _check_choice("class_weighting", class_weighting, WEIGHT_STRATEGIES)
        _check_choice("absent_class_weight", absent_class_weight, ABSENT_CLASS_WEIGHTS)
        if isinstance(dice_classes, str):
            _check_choice("dice_classes", dice_classes, DICE_CLASSES)
        self.dice_weight, self.focal_weight, self.ce_weight = dice_weight, focal_weight, ce_weight
        self.gamma, self.smooth, self.ignore_index = float(gamma), float(smooth), int(ignore_index)
        self.class_weighting, self.class_weight_max_ratio = class_weighting, class_weight_max_ratio
        self.absent_class_weight = absent_class_weight
        self.dice_rule = dice_classes if isinstance(dice_classes, str) else None
        # buffers, not persistent: they move with the module (no per-step copy) and are no part of the weights
        # a checkpoint holds (the checkpoint records them as numbers: the module's `class_weights` record)
        self.register_buffer("class_weights", None, persistent=False)
        self.register_buffer("dice_classes", None, persistent=False)
        self._set(class_weights, None if isinstance(dice_classes, str) else dice_classes)

    def _set(self, class_weights: Sequence[float] | None, dice_classes: Sequence[int] | None) -> None:
        device = next((b.device for b in self.buffers()), None)
        self.class_weights = (
            None if class_weights is None else torch.tensor([float(w) for w in class_weights], device=device)
        )
        self.dice_classes = (
            None
            if dice_classes is None
            else torch.tensor([int(c) for c in dice_classes], dtype=torch.long, device=device)
        )

    def fit_class_weights(self, counts: Sequence[int]) -> dict[str, Any]:
        """The class weights and Dice classes the rules give for a training fold with these per-class pixel
        counts, set on the loss; returns them with what they came from (class_weights.json)."""
        weights = class_weights_from_counts(
            counts, self.class_weighting, self.class_weight_max_ratio, self.absent_class_weight
        )
        dice_classes = (
            dice_classes_from_counts(counts, self.dice_rule)
            if self.dice_rule
            else (None if self.dice_classes is None else self.dice_classes.tolist())
        )
        self._set(weights.tolist(), dice_classes)
        return {
            "strategy": self.class_weighting,
            "absent_class_weight": self.absent_class_weight,
            "dice_classes": dice_classes,
            "train_pixel_counts": [int(c) for c in counts],
            "weights": weights.tolist(),
        }

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
            loss = loss + self.ce_weight * F.cross_entropy(
                logits, target.long(), weight=self.class_weights, ignore_index=self.ignore_index
            )
        return loss
