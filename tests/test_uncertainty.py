"""The uncertainty map: zero where the views agree, high where they disagree, the same on every inference path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heritage_seg.data.labels import LabelMap
from heritage_seg.inference.mapping import uncertainty_views
from heritage_seg.inference.sliding import sliding_window_predict
from heritage_seg.inference.tta import DEFAULT_TTA, TRANSFORMS, ensemble_probabilities, predict_probabilities
from heritage_seg.inference.upsample import native_class_map
from heritage_seg.reporting.damage import uncertainty_report

CLASSES = 4


def equivariant():
    """A 1x1 convolution commutes with flips and rotations: every TTA view gives the same probabilities."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, CLASSES, 1)
    return lambda x: conv(x.float() / 255)


def left_band():
    """Certain of class 1 in the left quarter of whatever it is shown, of class 0 elsewhere: its flipped and
    rotated views, mapped back, put class 1 in other places."""

    def logits(x):
        out = torch.zeros(x.shape[0], CLASSES, *x.shape[-2:])
        out[:, 1, :, : x.shape[-1] // 4] = 12.0
        out[:, 0, :, x.shape[-1] // 4 :] = 12.0
        return out

    return logits


def views(model, x):
    return [TRANSFORMS[n][1](model(TRANSFORMS[n][0](x)).softmax(1)) for n in DEFAULT_TTA]


def image(size=64):
    return torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 3, size, size), dtype=np.uint8))


def test_views_that_agree_have_zero_uncertainty():
    spread = predict_probabilities(equivariant(), image(), DEFAULT_TTA, spread=True)
    assert spread.shape[1] == CLASSES + 1
    assert spread[:, -1].max() < 1e-5


def test_uncertainty_rises_exactly_where_the_views_disagree():
    model, x = left_band(), image()
    u = predict_probabilities(model, x, DEFAULT_TTA, spread=True)[0, -1]
    votes = torch.stack([v.argmax(1)[0] for v in views(model, x)])
    agree = (votes == votes[0]).all(0)
    assert agree.any() and (~agree).any()
    assert u[agree].max() < 1e-4
    assert u[~agree].min() > 0.3
    # two certain views against two: the mutual information is log 2, over the largest possible, log 4
    split = (votes == votes[0]).sum(0) == 2
    assert torch.allclose(u[split & ~agree], torch.tensor(math.log(2) / math.log(4)), atol=1e-3)


def test_extra_channel_leaves_the_probabilities_as_they_were():
    model, x = left_band(), image()
    plain = predict_probabilities(model, x, DEFAULT_TTA)
    torch.testing.assert_close(predict_probabilities(model, x, DEFAULT_TTA, spread=True)[:, :CLASSES], plain)


def test_an_ensemble_of_equal_members_agrees_and_of_different_members_does_not():
    x = image()
    same = ensemble_probabilities([equivariant(), equivariant()], x, spread=True)
    assert same[:, -1].max() < 1e-5
    a, b = equivariant(), left_band()
    mixed = ensemble_probabilities([a, b], x, spread=True)
    torch.testing.assert_close(mixed[:, :CLASSES], (a(x).softmax(1) + b(x).softmax(1)) / 2)
    assert mixed[:, -1].mean() > 0.1


def test_sliding_windows_give_the_same_classes_with_the_map_and_zero_where_views_agree():
    scan = np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)
    plain, confidence, none = sliding_window_predict(scan, equivariant(), CLASSES, 32, 20, transforms=DEFAULT_TTA)
    classes, confidence2, spread = sliding_window_predict(
        scan, equivariant(), CLASSES, 32, 20, transforms=DEFAULT_TTA, uncertainty=True
    )
    assert none is None and spread.shape == scan.shape[:2] and spread.dtype == np.uint8
    np.testing.assert_array_equal(classes, plain)
    np.testing.assert_array_equal(confidence2, confidence)
    assert spread.max() == 0
    _, _, disagreeing = sliding_window_predict(scan, [equivariant(), left_band()], CLASSES, 32, 20, uncertainty=True)
    assert disagreeing.max() > 100


def test_the_whole_scan_path_upsamples_the_map_with_the_probabilities():
    probs = predict_probabilities(left_band(), image(32), DEFAULT_TTA, spread=True)[0]
    classes, confidence, spread = native_class_map(probs, 70, 50, uncertainty=True)
    plain_classes, plain_confidence, none = native_class_map(probs[:CLASSES], 70, 50)
    assert none is None and spread.shape == (70, 50)
    np.testing.assert_array_equal(classes, plain_classes)
    np.testing.assert_array_equal(confidence, plain_confidence)
    assert spread.min() == 0 and spread.max() > 100


def test_the_option_writes_a_map_only_where_views_can_disagree():
    assert uncertainty_views("auto", 1, 1) == 0
    assert uncertainty_views("auto", 1, 4) == 4 and uncertainty_views("auto", 3, 1) == 3
    assert uncertainty_views(False, 3, 4) == 0 and uncertainty_views(True, 2, 1) == 2
    with pytest.raises(ValueError, match="uncertainty=true needs at least two views"):
        uncertainty_views(True, 1, 1)
    with pytest.raises(ValueError, match="uncertainty=maybe"):
        uncertainty_views("maybe", 1, 4)


def test_the_report_counts_what_the_map_shows():
    labels = LabelMap.from_config(
        {
            "clean": "Clean",
            "ignore_index": 255,
            "classes": [
                {"name": "Clean", "raw": 0, "color": "#000000"},
                {"name": "Cracks", "raw": 1, "color": "#0000A6"},
                {"name": "Dust", "raw": 2, "color": "#FF4A46"},
            ],
        }
    )
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (1100, 37), dtype=np.uint8)
    mask[:5] = 255  # transparent: not object
    spread = rng.integers(0, 256, mask.shape, dtype=np.uint8)
    report = uncertainty_report(mask, spread, labels, 0.2, views=4, rows=100)
    obj, damage = mask < 3, (mask == 1) | (mask == 2)
    assert report["mean"] == pytest.approx(spread[obj].mean() / 255, abs=1e-4)
    assert report["damage_uncertain_percent"] == pytest.approx(100 * (spread[damage] >= 51).mean(), abs=1e-4)
    assert report["per_class"]["Dust"]["mean"] == pytest.approx(spread[mask == 2].mean() / 255, abs=1e-4)
    assert report["views"] == 4 and report["threshold"] == 0.2
