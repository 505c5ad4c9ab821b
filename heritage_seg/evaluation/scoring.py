"""Score a model on a data set: dataset-level confusion matrix, per-image scores, the metrics.json payload.

Shared by `python -m heritage_seg.evaluate` and the end-of-training evaluation callback, so both write the
same numbers in the same schema.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.folds import DEFAULT_SPLIT
from heritage_seg.data.labels import LabelMap
from heritage_seg.evaluation.calibration import Calibration
from heritage_seg.evaluation.metrics import binary_metrics, coarse_metrics, count_confusion, segmentation_metrics
from heritage_seg.evaluation.native import native_confusion
from heritage_seg.inference.sliding import protocol_probabilities
from heritage_seg.inference.uncertainty import MEASURE as UNCERTAINTY_MEASURE
from heritage_seg.inference.uncertainty import to_uint8
from heritage_seg.models.pretrained import started_from
from heritage_seg.models.unet import encoder_name

VERSIONED_PACKAGES = ("heritage_seg", "torch", "lightning", "segmentation-models-pytorch", "timm", "torchmetrics")


@dataclass
class EvalResult:
    confmat: np.ndarray  # (C, C) int64, rows = truth, cols = prediction, ignore excluded
    indices: list[int] = field(default_factory=list)  # data-set index of every evaluated image, in order
    per_image_confmat: list[np.ndarray] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8 class ids
    confidence: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8, max probability * 255
    uncertainty: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8 disagreement * 255, with views
    # the same predictions scored against the masks at their stored resolution (None: not asked for)
    native_confmat: np.ndarray | None = None
    calibration: Calibration | None = None  # confidence and uncertainty bins, counted where the metrics are
    views: int = 1  # members x TTA transforms

    def per_image_miou(self) -> np.ndarray:
        return np.array([segmentation_metrics(cm)["miou"] for cm in self.per_image_confmat])


@torch.no_grad()
def run_evaluation(
    logits_fn: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]],
    batches: Iterable[dict[str, torch.Tensor]],
    num_classes: int,
    ignore_index: int,
    transforms: Sequence[str] = ("identity",),
    device: torch.device | str = "cpu",
    keep_predictions: bool = True,
    native_mask: Callable[[int], np.ndarray] | None = None,
    native_prediction: Callable[[int, np.ndarray, np.ndarray | None], None] | None = None,
    probabilities: Callable[..., torch.Tensor] | None = None,
) -> EvalResult:
    """Every pixel of every batch goes into one confusion matrix; per-image matrices are kept for ranking.

    Several models (an ensemble) average their softmax probabilities over every member's every view;
    `probabilities` (logits_fns, images, transforms, spread) -> (N, C[+1], H, W) is how, per the models' training
    protocol (sliding windows over whole images for crop-trained models: inference/sliding.protocol_probabilities).
    With two views or more (TTA, an ensemble) the views' disagreement is computed too (inference/uncertainty.py):
    `result.uncertainty` and the error rate per uncertainty bin in `result.calibration`, which also counts the
    softmax's calibration. With `native_mask` (data-set index -> class-id mask at its stored resolution) the same
    probabilities are also upsampled to that mask's size and counted there (evaluation/native.py):
    `result.native_confmat`, and the calibration is counted there; each image's class map (and uncertainty map,
    or None) at that size is handed to `native_prediction(index, map, uncertainty)` if given (never all kept)."""
    models = list(logits_fn) if isinstance(logits_fn, (list, tuple)) else [logits_fn]
    probabilities = probabilities or protocol_probabilities(None)
    views = len(models) * len(transforms)
    spread = views > 1
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    result = EvalResult(confmat=total, calibration=Calibration(device), views=views)
    if native_mask is not None:
        result.native_confmat = np.zeros((num_classes, num_classes), dtype=np.int64)
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        masks = batch["mask"].to(device, non_blocking=True)
        probs = probabilities(models, images, transforms, spread=spread)
        disagreement = probs[:, num_classes] if spread else None
        class_probs = probs[:, :num_classes]
        confidence, pred = class_probs.max(dim=1)
        per_image = count_confusion(masks, pred, num_classes, ignore_index, per_image=True).cpu().numpy()  # one copy
        total += per_image.sum(axis=0)
        result.per_image_confmat.extend(per_image)
        result.indices.extend(int(i) for i in batch["index"])
        if native_mask is not None:
            for one, index in zip(probs, batch["index"]):
                mask = torch.from_numpy(native_mask(int(index)))
                keep = native_prediction is not None
                pred_native = np.zeros(tuple(mask.shape), dtype=np.uint8) if keep else None
                spread_native = np.zeros(tuple(mask.shape), dtype=np.uint8) if keep and spread else None
                result.native_confmat += (
                    native_confusion(
                        one,
                        mask,
                        num_classes,
                        ignore_index,
                        prediction=pred_native,
                        calibration=result.calibration,
                        uncertainty=spread_native,
                    )
                    .cpu()
                    .numpy()
                )
                if keep:
                    native_prediction(int(index), pred_native, spread_native)
        else:
            for k in range(len(images)):
                result.calibration.add(
                    class_probs[k], masks[k], ignore_index, None if disagreement is None else disagreement[k]
                )
        if keep_predictions:
            result.predictions.extend(pred.to(torch.uint8).cpu().numpy())
            result.confidence.extend((confidence * 255).round().to(torch.uint8).cpu().numpy())
            if disagreement is not None:
                result.uncertainty.extend(to_uint8(disagreement).cpu().numpy())
    return result


def _json_number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_context(run_cfg: Mapping[str, Any], checkpoint: str | Path, split=None) -> dict[str, Any]:
    """What a metrics.json says about the run it evaluates (its resolved config, and its FoldSplit if given:
    leave-one-group-out folds have as many folds as groups, and a held-out group name)."""
    protocol = Protocol.from_data_config(run_cfg["data"])
    context = {
        "encoder": encoder_name(run_cfg["encoder"]),
        "family": run_cfg["encoder"].get("family"),
        "fold": run_cfg["fold"],
        "n_folds": run_cfg["n_folds"],
        "split": run_cfg.get("split", DEFAULT_SPLIT),
        "seed": run_cfg["seed"],
        "image_size": protocol.image_size,
        # the training protocol: squash (image_size x image_size) or longest_side (crops of image_size from
        # images cached with their longest side at most resize_max_side)
        "resize": protocol.resize,
        "resize_max_side": protocol.max_side,
        "checkpoint": str(checkpoint),
        "started_from": started_from(run_cfg),
    }
    if split is not None:
        context.update(n_folds=split.n_folds, held_out=split.held_out)
    return context


def _block(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: int(v) if k.endswith("pixels") else _json_number(v) for k, v in values.items()}


def binary_block(confmat, clean_index: int, clean_name: str) -> dict[str, Any]:
    """metrics.json `binary`: any damage against the label map's clean class, from the fine prediction collapsed."""
    return {"clean_class": clean_name, **_block(binary_metrics(confmat, clean_index))}


def coarse_block(confmat: np.ndarray, labels: LabelMap) -> dict[str, Any] | None:
    """metrics.json `coarse` (a label map with `groups:`): IoU etc. per group, the means over the groups present
    (`miou`: in truth or prediction; `miou_gt`: in the truth), and which classes each group holds."""
    if not labels.groups:
        return None
    m = coarse_metrics(confmat, labels.coarse_lookup(), labels.coarse_names)
    per_group = {  # coarse class 0 is the clean class, which the binary block reports
        name: {**_block({k: m[k][g] for k in PER_CLASS_KEYS}), "classes": classes}
        for g, (name, classes) in enumerate(labels.coarse_members().items(), start=1)
    }
    return {"miou": _json_number(m["miou"]), "miou_gt": _json_number(m["miou_gt"]), "groups": per_group}


PER_CLASS_KEYS = ("iou", "dice", "precision", "recall", "f1", "gt_pixels", "pred_pixels")


def metrics_payload(confmat: np.ndarray, labels: LabelMap, **context: Any) -> dict[str, Any]:
    """The metrics.json schema. Undefined values (absent classes) are null, never 0."""
    class_names = labels.names
    m = segmentation_metrics(confmat)
    per_class = {name: _block({k: m[k][c] for k in PER_CLASS_KEYS}) for c, name in enumerate(class_names)}
    return {
        "miou": _json_number(m["miou"]),  # strict: classes in truth or prediction (mmsegmentation's)
        "miou_gt": _json_number(m["miou_gt"]),  # classes present in the ground truth: the selection criterion
        "pixel_accuracy": _json_number(m["pixel_accuracy"]),
        "mean_dice": _json_number(m["mean_dice"]),
        "per_class": per_class,
        "binary": binary_block(confmat, labels.clean_index, labels.clean_name),  # where is there damage at all
        "coarse": coarse_block(confmat, labels),
        "classes": list(class_names),
        "confusion_matrix": np.asarray(confmat, dtype=np.int64).tolist(),
        **context,
        "versions": package_versions(),
    }


TRAIN_RESOLUTION_KEYS = (
    "miou",
    "miou_gt",
    "pixel_accuracy",
    "mean_dice",
    "per_class",
    "binary",
    "coarse",
    "confusion_matrix",
)


def scored_payload(result: EvalResult, labels: LabelMap, max_side: int | None = None, **context: Any) -> dict[str, Any]:
    """metrics.json for an evaluation: at the masks' own resolution when `result` was scored there
    (`resolution: native`, the cap `max_side` if one applied), with the figures at the model's input size in a
    `train_resolution` block (what the seed's table compares with); else at the input size (`resolution: train`)."""
    train = metrics_payload(result.confmat, labels, **context)
    if result.native_confmat is None:
        return {**train, "resolution": "train"}
    payload = metrics_payload(result.native_confmat, labels, **context)
    payload.update(
        resolution="native", max_side=max_side, train_resolution={key: train[key] for key in TRAIN_RESOLUTION_KEYS}
    )
    return payload


def evaluation_payload(
    result: EvalResult,
    labels: LabelMap,
    transforms: Sequence[str],
    run_config: Mapping[str, Any],
    checkpoint: str | Path,
    split=None,
    **context: Any,
) -> dict[str, Any]:
    """metrics.json of one evaluation of a run's checkpoint: what `evaluate` and the end-of-fit report both write
    (`context`: max_side, device, precision, seconds and what else the caller records)."""
    calibration = result.calibration.payload() if result.calibration is not None else {}
    if calibration.get("error_by_uncertainty") is not None:
        calibration["uncertainty"] = {"measure": UNCERTAINTY_MEASURE, "views": result.views}
    return scored_payload(
        result,
        labels,
        **calibration,
        tta=len(transforms) > 1,
        tta_transforms=list(transforms),
        num_images=len(result.indices),
        **run_context(run_config, checkpoint, split),
        **context,
    )


def format_table(payload: dict[str, Any]) -> str:
    """Per-class table as mmsegmentation prints it (percent; '-' where undefined)."""

    def pct(v):
        return "   -  " if v is None else f"{100 * v:6.2f}"

    lines = [f"{'Class':<15} |  IoU   |  Dice  | Precis | Recall |   F1   ", "-" * 60]
    for name, row in payload["per_class"].items():
        lines.append(f"{name:<15} | " + " | ".join(pct(row[k]) for k in ("iou", "dice", "precision", "recall", "f1")))
    lines.append("-" * 60)
    lines.append(
        f"mIoU (truth classes) {pct(payload.get('miou_gt'))}   mIoU (strict) {pct(payload['miou'])}   "
        f"mDice {pct(payload['mean_dice'])}   pixel accuracy {pct(payload['pixel_accuracy'])}   "
        f"(tta={payload.get('tta')})"
    )
    binary = payload.get("binary") or {}
    if binary:
        lines.append(
            f"any damage vs {binary['clean_class']}: IoU {pct(binary['iou'])}   precision {pct(binary['precision'])}   "
            f"recall {pct(binary['recall'])}   F1 {pct(binary['f1'])}"
        )
    if payload.get("coarse"):
        groups = payload["coarse"]["groups"]
        lines.append(
            f"coarse groups: mIoU (groups in truth) {pct(payload['coarse']['miou_gt'])}   "
            + "   ".join(f"{name} {pct(row['iou'])}" for name, row in groups.items())
        )
    if payload.get("ece") is not None:
        lines.append(f"expected calibration error of the softmax (ECE, 15 bins) {payload['ece']:.4f}")
    if payload.get("resolution") == "native":
        train = payload["train_resolution"]
        cap = f", longest side capped at {payload['max_side']} px" if payload.get("max_side") else ""
        lines.append(
            f"at each mask's own resolution{cap}; at the model's input size ({payload.get('image_size')} px): "
            f"mIoU (truth classes) {pct(train.get('miou_gt'))}   mIoU (strict) {pct(train['miou'])}"
        )
    return "\n".join(lines)
