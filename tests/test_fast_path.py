"""The fast path computes what the plain path computes: batch augmentation stays aligned, channels_last same loss."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from heritage_seg.data.augment import BatchFlipRotate
from heritage_seg.models.unet import build_unet
from heritage_seg.training.losses import DiceFocalLoss
from heritage_seg.training.module import SegmentationModule
from tests.conftest import compose_config
from tests.helpers import run_benchmark


def test_batch_augmentation_keeps_image_and_mask_aligned_pixel_exactly():
    n, size = 64, 16
    masks = torch.randint(0, 16, (n, size, size))
    masks[:, 2, 3] = 15  # a marked pixel away from every symmetry axis
    images = (masks * 10).to(torch.uint8).unsqueeze(1).repeat(1, 3, 1, 1)  # the image spells out its mask
    out_images, out_masks = BatchFlipRotate(seed=0)(images, masks)
    assert torch.equal(out_images[:, 0].long(), out_masks * 10) and torch.equal(out_images[:, 1], out_images[:, 0])
    # the marked pixel lands on one of its 8 symmetric positions, and all 8 occur over 64 samples
    positions = set()
    for i in range(n):
        ys, xs = torch.nonzero(out_masks[i] == 15, as_tuple=True)
        marked = {(int(y), int(x)) for y, x in zip(ys, xs)} & {
            (2, 3),
            (3, 2),
            (2, 12),
            (12, 2),
            (13, 3),
            (3, 13),
            (13, 12),
            (12, 13),
        }
        assert marked, f"sample {i}: marked pixel lost"
        positions |= marked
    assert len(positions) == 8
    assert not torch.equal(out_masks, masks)  # it did something
    assert torch.equal(images, (masks * 10).to(torch.uint8).unsqueeze(1).repeat(1, 3, 1, 1))  # inputs untouched


def test_batch_augmentation_is_reproducible_from_its_seed():
    images, masks = torch.randint(0, 255, (8, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 16, (8, 8, 8))
    a = BatchFlipRotate(seed=3)(images, masks)
    b = BatchFlipRotate(seed=3)(images, masks)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _reference_flip_rotate(flags, images, masks):
    """The previous implementation (boolean-mask indexing): the sync-free one must give exactly its batches."""
    images, masks = images.clone(), masks.clone()
    for column, op in enumerate((lambda t: t.flip(-1), lambda t: t.flip(-2))):
        chosen = flags[:, column]
        if chosen.any():
            images[chosen], masks[chosen] = op(images[chosen]), op(masks[chosen])
    turn = flags[:, 2]
    if turn.any():
        images[turn] = images[turn].rot90(1, dims=(-2, -1))
        masks[turn] = masks[turn].rot90(1, dims=(-2, -1))
    return images, masks


def test_sync_free_augmentation_gives_the_same_batches_as_masked_indexing():
    augment = BatchFlipRotate(seed=7)
    draws = torch.Generator().manual_seed(7)  # the augmentation's own stream of draws, replayed
    for _ in range(5):
        images = torch.randint(0, 255, (8, 3, 12, 12), dtype=torch.uint8)
        masks = torch.randint(0, 16, (8, 12, 12))
        flags = torch.rand(8, 3, generator=draws) < torch.tensor([0.5, 0.5, 0.5])
        expected = _reference_flip_rotate(flags, images, masks)
        got = augment(images, masks)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_rot90_on_non_square_batches_is_refused_whatever_the_draws():
    with pytest.raises(ValueError, match="square"):
        BatchFlipRotate(seed=0)(torch.zeros(1, 3, 8, 12, dtype=torch.uint8), torch.zeros(1, 8, 12, dtype=torch.long))
    images, masks = BatchFlipRotate(rot90=0.0, seed=0)(
        torch.zeros(2, 3, 8, 12, dtype=torch.uint8), torch.zeros(2, 8, 12, dtype=torch.long)
    )
    assert images.shape == (2, 3, 8, 12) and masks.shape == (2, 8, 12)


def _module(model, channels_last):
    run_config = OmegaConf.to_container(compose_config(["run_dir=/tmp/x"]), resolve=True)
    return SegmentationModule(
        run_config, model=model, loss=DiceFocalLoss(class_weights=[1.0] * 16), channels_last=channels_last
    )


def test_channels_last_gives_the_same_loss_and_gradients_as_the_plain_layout():
    torch.manual_seed(0)
    model = build_unet("tu-convnext_tiny", None, 16)
    plain, fast = _module(copy.deepcopy(model), False), _module(copy.deepcopy(model), True)
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    masks = torch.randint(0, 16, (2, 64, 64))
    masks[:, :5] = 255
    losses = []
    for module in (plain, fast):
        loss = module.loss(module(images), masks)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    grad_plain = plain.model.segmentation_head[0].weight.grad
    grad_fast = fast.model.segmentation_head[0].weight.grad
    torch.testing.assert_close(grad_plain, grad_fast, rtol=1e-4, atol=1e-6)
    assert fast.model.segmentation_head[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_train_benchmark_script_runs_at_tiny_size_and_writes_json(tmp_path):
    payload, _ = run_benchmark(
        "train_throughput.py", "--encoders convnext --image-size 64 --batch-size 2 --steps 2 --warmup 1 --repeats 2"
    )
    (result,) = payload["results"]
    assert result["encoder"] == "convnext" and result["bare_images_per_s"] > 0
    assert len(result["real_seconds_runs"]) == len(result["bare_seconds_runs"]) == 2  # --repeats: both paths, twice
    # figures only, no timing comparison: a loaded machine reorders them (the test flaked while CI ran beside it)
    assert (
        0 < result["ratio_real_over_bare"] and result["eval_tta_images_per_s"] > 0 and result["eval_images_per_s"] > 0
    )


@pytest.mark.slow
def test_sweep_projection_script_runs_the_real_cli_at_tiny_size_and_writes_json(tmp_path):
    payload, printed = run_benchmark(
        "sweep_time.py", "--encoders convnext --images 16 --image-size 64 --batch-size 4 --epochs 3"
    )
    (result,) = payload["results"]
    assert result["encoder"] == "convnext" and result["epochs_run"] == 3
    assert result["steady_epoch_s"] > 0 and result["first_epoch_incl_startup_s"] > 0 and result["report_wall_s"] > 0
    assert (result["report_device"], result["report_precision"]) == ("cpu", "32-true")
    # 3 folds x (first epoch + 49 steady epochs + report + shutdown), from the measured parts
    one_run = (
        result["first_epoch_incl_startup_s"]
        + 49 * result["steady_epoch_s"]
        + result["report_wall_s"]
        + result["shutdown_s"]
    ) / 60
    assert payload["projected_sweep_min"] == pytest.approx(3 * one_run, abs=0.1)
    assert "projected sweep" in printed
