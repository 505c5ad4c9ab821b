"""Dataset-level metrics from one confusion matrix; absent classes are NaN and left out of the mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
)

from heritage_seg.evaluation.metrics import segmentation_metrics


def test_hand_computed_confusion_matrix_with_an_absent_class():
    # rows = truth, cols = prediction; class 3 never occurs in truth or prediction
    # class 2 is predicted 5 times but never true: IoU 0 (a real error), not NaN
    cm = np.array([[50, 5, 5, 0], [10, 20, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    m = segmentation_metrics(cm)
    # class 0: tp 50, fp 10, fn 10 -> 50/70 ; class 1: tp 20, fp 5, fn 10 -> 20/35 ; class 2: 0/5 = 0
    np.testing.assert_allclose(m["iou"][:3], [50 / 70, 20 / 35, 0.0])
    assert math.isnan(m["iou"][3]) and math.isnan(m["dice"][3])
    assert m["miou"] == np.mean([50 / 70, 20 / 35, 0.0])
    np.testing.assert_allclose(m["dice"][:2], [100 / 120, 40 / 55])
    np.testing.assert_allclose(m["precision"][:3], [50 / 60, 20 / 25, 0.0])
    np.testing.assert_allclose(m["recall"][:2], [50 / 60, 20 / 30])
    assert math.isnan(m["recall"][2])
    assert m["pixel_accuracy"] == 70 / 90


def test_ignore_pixels_are_not_counted_and_iou_matches_torchmetrics():
    torch.manual_seed(0)
    target = torch.randint(0, 5, (4, 16, 16))
    target[target == 4] = 3  # class 4 absent from truth...
    preds = target.clone()
    flip = torch.rand(target.shape) < 0.3
    preds[flip] = torch.randint(0, 4, (int(flip.sum()),))  # ...and from predictions
    target[:, :4] = 255
    preds[:, :4] = 0  # predictions at ignored pixels must not count
    confmat = MulticlassConfusionMatrix(5, ignore_index=255)
    confmat.update(preds[:2], target[:2])
    confmat.update(preds[2:], target[2:])  # accumulated over batches, computed once
    cm = confmat.compute()
    assert cm.sum() == (target != 255).sum()
    m = segmentation_metrics(cm)
    reference = MulticlassJaccardIndex(5, average=None, ignore_index=255)(preds, target)
    np.testing.assert_allclose(m["iou"][:4], reference[:4].numpy(), rtol=1e-6)
    assert math.isnan(m["iou"][4])  # torchmetrics reports 0 here; we leave the class out
    assert m["miou"] == np.mean(m["iou"][:4])


def _thin_damage_confusion(finds_damage: bool) -> np.ndarray:
    """Validation truth: Clean (class 0) and one thin class (1); classes 2..5 absent from the truth.

    The model that finds the damage gets 60 % of the thin pixels and marks 8 stray clean pixels as each of the
    four absent classes; the other one predicts only Clean."""
    cm = np.zeros((6, 6), dtype=np.int64)
    clean, thin = 9_900, 100
    if finds_damage:
        cm[0, 0], cm[0, 1], cm[0, 2:6] = clean - 20 - 32, 20, 8
        cm[1, 1], cm[1, 0] = 60, 40
    else:
        cm[0, 0], cm[1, 0] = clean, thin
    return cm


def test_selection_metric_prefers_finding_the_thin_class_over_predicting_nothing():
    finder, nothing = (segmentation_metrics(_thin_damage_confusion(f)) for f in (True, False))
    assert finder["iou"][1] == pytest.approx(60 / 120) and nothing["iou"][1] == 0.0
    # the strict mean counts each stray absent class as 0 and so prefers the model that finds nothing ...
    assert finder["miou"] < nothing["miou"]
    # ... the mean over the classes in the truth does not, and still charges the stray pixels to Clean
    assert finder["miou_gt"] > nothing["miou_gt"]
    assert finder["miou_gt"] == pytest.approx(np.mean([finder["iou"][0], finder["iou"][1]]))
    assert finder["iou"][0] < 1 - 52 / 9_900  # the 52 clean pixels called damage are Clean's false negatives


def test_selection_metric_is_undefined_without_annotated_pixels():
    assert math.isnan(segmentation_metrics(np.zeros((3, 3)))["miou_gt"])


def test_per_image_confusion_of_a_batch_equals_one_bincount_per_image_without_ignored_pixels():
    from heritage_seg.evaluation.metrics import count_confusion

    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (3, 7, 9), generator=generator)
    target = torch.randint(0, 5, (3, 7, 9), generator=generator)
    target[0, 0] = 255
    target[2] = 255  # an image without annotated pixels: an all-zero matrix
    batch = count_confusion(target, pred, 5, 255, per_image=True)
    for i in range(3):
        valid = target[i] != 255
        expected = torch.bincount(target[i][valid] * 5 + pred[i][valid], minlength=25).view(5, 5)
        assert torch.equal(batch[i], expected)
    assert batch[2].sum() == 0 and batch.sum() == (target != 255).sum()
