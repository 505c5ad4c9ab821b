"""Dataset-level metrics from one confusion matrix; absent classes are NaN and left out of the mean."""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from heritage_seg.metrics import segmentation_metrics


def test_hand_computed_confusion_matrix_with_an_absent_class():
    # rows = truth, cols = prediction; class 3 never occurs in truth or prediction
    # class 2 is predicted 5 times but never true: IoU 0 (a real error), not NaN
    cm = np.array([[50, 5, 5, 0],
                   [10, 20, 0, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]])
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
