"""Class weights from hand-computed counts; the ignore index is respected by the loss; every loss option works."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from heritage_seg.tasks.train import train
from heritage_seg.training.losses import (
    DiceFocalLoss,
    build_loss,
    class_weights_from_counts,
    dice_classes_from_counts,
)
from tests.conftest import compose_config, tiny_train_overrides


def test_inverse_sqrt_weights_hand_computed():
    # freq ∝ [100, 25, 0, 4] -> 1/sqrt ∝ [1/10, 1/5, -, 1/2], mean 0.2667 -> [0.375, 0.75, 1.875]; absent -> max
    weights = class_weights_from_counts([100, 25, 0, 4], "inverse_sqrt")
    np.testing.assert_allclose(weights, [0.375, 0.75, 1.875, 1.875])


def test_inverse_weights_and_none():
    np.testing.assert_allclose(class_weights_from_counts([300, 100, 0], "inverse"), [0.5, 1.5, 1.5])
    np.testing.assert_array_equal(class_weights_from_counts([300, 100, 0], "none"), [1, 1, 1])


def test_artefact_like_imbalance_gives_distinct_weights():
    # pixel counts of the real data (millions), shared/README.md; earlier work clipped these to equality
    counts = [69.75, 2.92, 3.88, 0.023, 0.17, 0.0054, 0.24, 0.66, 0.074, 0.48, 0.80, 0.039, 0.094, 0.018, 0.0011, 0.56]
    weights = class_weights_from_counts(counts)
    assert len(np.unique(np.round(weights, 6))) == 16
    assert np.argmin(weights) == 0 and np.argmax(weights) == 14  # Clean lowest, Burn marks highest


def test_max_ratio_caps_the_spread():
    weights = class_weights_from_counts([1e6, 1, 100], "inverse", max_ratio=10)
    assert weights.max() / weights.min() == pytest.approx(10)


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="loss.class_weighting=log"):
        class_weights_from_counts([1, 2], "log")


def test_loss_ignores_pixels_marked_ignore():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[:, :3] = 255
    loss = DiceFocalLoss(class_weights=[1.0, 2.0, 1.0, 0.5], ignore_index=255)
    base = loss(logits, target)
    changed = logits.clone()
    changed[:, :, :3] = torch.randn(2, 4, 3, 8) * 10  # whatever the model says at ignored pixels...
    assert torch.isfinite(base)
    torch.testing.assert_close(loss(changed, target), base)  # ...does not change the loss


def test_loss_gives_gradients_and_prefers_the_right_answer():
    target = torch.randint(0, 3, (1, 8, 8))
    good = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 8
    bad = torch.roll(good, 1, dims=1)
    loss = DiceFocalLoss(class_weights=[1.0, 1.0, 1.0])
    assert loss(good, target) < loss(bad, target)
    logits = torch.zeros(1, 3, 8, 8, requires_grad=True)
    loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0


def test_absent_classes_can_be_left_out_of_the_weighted_means():
    # absent_class_weight=zero: same present weights as "max", absent classes get 0 (out of Dice and Focal)
    np.testing.assert_allclose(
        class_weights_from_counts([100, 25, 0, 4], "inverse_sqrt", absent="zero"), [0.375, 0.75, 0.0, 1.875]
    )
    np.testing.assert_array_equal(class_weights_from_counts([300, 0, 100], "none", absent="zero"), [1, 0, 1])
    with pytest.raises(ValueError, match="loss.absent_class_weight=drop"):
        class_weights_from_counts([1, 2], absent="drop")


def test_dice_over_present_classes_is_not_diluted_by_absent_ones():
    """16 outputs, 2 classes in the data: with dice_classes the Dice term equals that of a 2-class model."""
    torch.manual_seed(0)
    target = (torch.rand(2, 16, 16) < 0.05).long() * 9  # Clean and one thin class (id 9)
    logits = torch.randn(2, 16, 16, 16)
    present = dice_classes_from_counts(np.bincount(target.reshape(-1), minlength=16), "present")
    assert present == [0, 9] and dice_classes_from_counts([5, 0, 3], "all") is None
    diluted = DiceFocalLoss(dice_weight=1.0, focal_weight=0.0)(logits, target)
    focused = DiceFocalLoss(dice_weight=1.0, focal_weight=0.0, dice_classes=present)(logits, target)
    probs = logits.softmax(1)
    # smp's soft Dice is Tversky(0.5, 0.5): (I + smooth) / (I + (fp + fn) / 2 + smooth), smooth 1 here
    dice_of = [
        1 - (2 * (probs[:, c] * (target == c)).sum() + 2) / (probs[:, c].sum() + (target == c).sum() + 2)
        for c in present
    ]
    torch.testing.assert_close(focused, torch.stack(dice_of).mean())
    torch.testing.assert_close(diluted, torch.stack(dice_of).sum() / 16)  # absent classes add 0 but count
    with pytest.raises(ValueError, match="loss.dice_classes=some"):
        dice_classes_from_counts([1, 2], "some")


@pytest.mark.parametrize("loss", ["dice_focal", "dice", "focal", "ce"])
def test_each_loss_gives_a_finite_loss_and_a_gradient(loss):
    cfg = OmegaConf.to_container(compose_config([f"loss={loss}", "run_dir=/tmp/x"]).loss, resolve=True)
    fn, _ = build_loss(cfg, counts=[100 * (i + 1) for i in range(16)])
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 16, 16, requires_grad=True)
    target = torch.randint(0, 16, (2, 16, 16))
    target[:, 0] = 255
    value = fn(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0
    active = {k: cfg[k] for k in ("dice_weight", "focal_weight", "ce_weight") if cfg[k]}
    expected = {
        "dice_focal": {"dice_weight": 0.5, "focal_weight": 0.5},
        "dice": {"dice_weight": 1.0},
        "focal": {"focal_weight": 1.0},
        "ce": {"ce_weight": 1.0},
    }[loss]
    assert active == expected


@pytest.mark.slow
def test_class_weights_none_really_means_equal_weights(tmp_path, sample_root):
    cfg = compose_config(tiny_train_overrides(tmp_path, sample_root) + ["loss.class_weighting=none"])
    train(cfg)
    record = json.loads((tmp_path / "class_weights.json").read_text())
    assert record["strategy"] == "none" and record["weights"] == [1.0] * 16
    assert len(set(class_weights_from_counts(record["train_pixel_counts"], "inverse_sqrt"))) > 1


def test_the_old_option_name_is_named_with_its_new_one():
    cfg = OmegaConf.to_container(compose_config(["run_dir=/tmp/x"]).loss, resolve=True)
    cfg["class_weights"] = cfg.pop("class_weighting")
    with pytest.raises(ValueError, match="renamed loss.class_weighting"):
        build_loss(cfg, counts=[10, 20])


@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0, 0.0, 3.0]])
@pytest.mark.parametrize("dice_classes", [None, [0, 2, 4]])
def test_the_loss_computes_smps_dice_and_focal_values_and_gradients(weights, dice_classes):
    """The hand-written, synchronisation-free loss must stay smp's DiceLoss + FocalLoss (what the seed trained with),
    ignored pixels, class weights, class subsets and a class absent from the batch included."""
    from segmentation_models_pytorch.losses import DiceLoss, FocalLoss

    torch.manual_seed(3)
    logits = (torch.randn(3, 5, 12, 10) * 3).requires_grad_()
    target = torch.randint(0, 5, (3, 12, 10))
    target[target == 3] = 1  # class 3 absent from the batch
    target[:, :4, :3] = 255
    ours = DiceFocalLoss(
        class_weights=weights,
        dice_weight=0.7,
        focal_weight=0.3,
        gamma=2.0,
        smooth=1.0,
        ignore_index=255,
        dice_classes=dice_classes,
    )
    dice = DiceLoss(
        "multiclass", classes=dice_classes, from_logits=True, smooth=1.0, ignore_index=255, class_weights=weights
    )
    focal = FocalLoss("multiclass", gamma=2.0, ignore_index=255, class_weights=weights)
    theirs = lambda x: 0.7 * dice(x, target) + 0.3 * focal(x, target)  # noqa: E731
    value, reference = ours(logits, target), theirs(logits)
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(value, logits)
    (grad_ref,) = torch.autograd.grad(theirs(logits), logits)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-7)


def test_the_loss_weights_move_with_the_module_and_stay_out_of_checkpoints():
    loss = DiceFocalLoss(class_weights=[1.0, 2.0, 3.0], dice_classes=[0, 2])
    assert {name for name, _ in loss.named_buffers()} >= {"class_weights", "dice_classes"}
    assert "class_weights" not in loss.state_dict() and "dice_classes" not in loss.state_dict()
    assert loss.to(torch.float64).class_weights.dtype == torch.float64  # follows the module, as .to(device) does


def test_a_batch_with_every_pixel_ignored_gives_a_finite_loss():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    value = DiceFocalLoss(class_weights=[1.0, 1.0, 1.0])(logits, torch.full((1, 4, 4), 255))
    assert torch.isfinite(value) and value == 0
