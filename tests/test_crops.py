"""The crop protocol (data.resize=longest_side): cache with aspect kept, random crops, sliding-window validation,
native metrics, and predict matching the training pixel density."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import Ragged
from heritage_seg.data.crops import RandomCropDataset
from heritage_seg.inference.sliding import (
    sliding_window_predict,
    sliding_window_probabilities,
)
from heritage_seg.tasks.evaluate import evaluate
from heritage_seg.tasks.predict import predict
from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides


def _ragged(arrays):
    return Ragged(np.concatenate([a.reshape(-1) for a in arrays]), np.asarray([a.shape for a in arrays]))


@pytest.fixture
def two_images():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    big_mask = np.zeros((90, 130), np.uint8)
    big_mask[70:72, 100:104] = 5  # 8 pixels of Hair
    small = rng.integers(0, 255, (20, 50, 3), dtype=np.uint8)  # smaller than a crop one way
    return _ragged([big, small]), _ragged([big_mask, np.zeros((20, 50), np.uint8)])


def test_longest_side_keeps_the_aspect_and_never_upscales():
    crops = Protocol("longest_side", 384, 1024)
    assert crops.cached_size(4000, 6000) == (683, 1024) and crops.cached_size(500, 371) == (500, 371)
    assert crops.scan_scale(4000, 6000) == pytest.approx(1024 / 6000) and crops.scan_scale(500, 371) == 1.0
    assert Protocol("squash", 384).cached_size(4000, 6000) == (384, 384) and Protocol("squash").scan_scale(9, 9) is None
    with pytest.raises(ValueError, match="data.resize=fit: choose squash"):
        Protocol("fit", 384)
    with pytest.raises(ValueError, match="data.max_side=256 is smaller than the crop size data.image_size=384"):
        Protocol("longest_side", 384, 256)


def test_the_protocol_a_checkpoint_records_reads_back_and_old_checkpoints_are_squash_at_their_size():
    crops = Protocol("longest_side", 128, 256, scale_median=0.5, scale_min=0.25, scale_max=1.0)
    assert Protocol.from_record(crops.to_dict(), image_size=999) == crops
    assert Protocol.from_record(None, image_size=64) == Protocol("squash", 64)
    assert Protocol.from_record({"resize": "squash"}, image_size=64).to_dict() == {"resize": "squash", "image_size": 64}


def test_crops_are_pieces_of_the_image_and_small_images_are_padded_with_ignored_mask(two_images):
    images, masks = two_images
    torch.manual_seed(0)
    data = RandomCropDataset(images, masks, np.array([0, 1]), 32, ignore_index=255, class_aware=0.0, crops_per_image=3)
    assert len(data) == 6
    for i in range(len(data)):
        item = data[i]
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)
        if int(item["index"]) == 0:  # a piece of the big image, at its own pixels
            crop = item["image"].permute(1, 2, 0).numpy()
            hits = [
                (y, x)
                for y in range(90 - 31)
                for x in range(130 - 31)
                if np.array_equal(images[0][y : y + 32, x : x + 32], crop)
            ]
            assert len(hits) == 1
        else:  # 20 rows: 12 padded rows are ignored by the loss
            assert int((item["mask"] == 255).sum()) == 12 * 32


def test_class_aware_crops_show_the_rare_class_and_are_reproducible(two_images):
    images, masks = two_images

    def hair_share(class_aware):
        torch.manual_seed(1)
        data = RandomCropDataset(images, masks, np.array([0]), 32, 255, class_aware=class_aware, crops_per_image=200)
        return np.mean([(data[i]["mask"] == 5).any().item() for i in range(len(data))])

    aware, plain = hair_share(1.0), hair_share(0.0)
    assert aware == 1.0  # every class-aware crop holds the 8 Hair pixels
    assert plain < 0.35  # by chance: about (32 x 32 placements that hold them) / all placements
    torch.manual_seed(5)
    first = RandomCropDataset(images, masks, np.array([0, 1]), 32, 255)[0]["image"]
    torch.manual_seed(5)
    assert torch.equal(first, RandomCropDataset(images, masks, np.array([0, 1]), 32, 255)[0]["image"])
    with pytest.raises(ValueError, match="data.class_aware_crops=1.5"):
        RandomCropDataset(images, masks, np.array([0]), 32, 255, class_aware=1.5)


@pytest.mark.parametrize("window,stride", [(32, 20), (64, 40), (128, 80)])
def test_whole_image_sliding_probabilities_match_the_strip_wise_scan_mapping(window, stride):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    image = np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8)
    classes, confidence, _ = sliding_window_predict(
        image, lambda x: conv(x.float() / 255), 5, window, stride, transforms=("identity", "hflip")
    )
    probs = sliding_window_probabilities(
        torch.from_numpy(image).permute(2, 0, 1),
        lambda x: conv(x.float() / 255),
        window,
        stride,
        transforms=("identity", "hflip"),
    )
    assert probs.shape == (5, 70, 100)
    np.testing.assert_array_equal(probs.argmax(0).numpy(), classes)
    np.testing.assert_array_equal((probs.max(0).values * 255).round().numpy(), confidence)


@pytest.mark.parametrize("height,width", [(1, 100), (70, 1), (1, 1), (2, 40)])
def test_sliding_probabilities_of_one_pixel_thin_images_finish_and_match_the_scan_mapping(height, width):
    """A cached image 1 px tall or wide (a long strip shrunk to max_side) has nothing to reflect: its padding once
    looped for ever in the torch twin of reflect_pad. An alarm turns such a hang into a failure."""
    import signal

    def hang(*_):
        raise TimeoutError("sliding_window_probabilities did not finish")

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    classes, confidence, _ = sliding_window_predict(image, lambda x: conv(x.float() / 255), 5, 32, 20)
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        probs = sliding_window_probabilities(
            torch.from_numpy(image).permute(2, 0, 1), lambda x: conv(x.float() / 255), 32, 20
        )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert probs.shape == (5, height, width)
    np.testing.assert_array_equal(probs.argmax(0).numpy(), classes)
    np.testing.assert_array_equal((probs.max(0).values * 255).round().numpy(), confidence)


@pytest.mark.slow
def test_crop_protocol_end_to_end_train_evaluate_predict(tmp_path, sample_root):
    run = tmp_path / "run"
    overrides = tiny_train_overrides(run, sample_root) + [
        "data.resize=longest_side",
        "data.max_side=96",
        "data.crops_per_image=2",
        "trainer.limit_val_batches=3",
    ]
    train(compose_config(overrides))
    report = json.loads((run / "metrics.json").read_text())
    assert (report["resolution"], report["resize"], report["resize_max_side"]) == ("native", "longest_side", 96)
    splits = json.loads((run / "splits.json").read_text())
    assert splits["resize"] == "longest_side" and splits["max_side"] == 96

    ckpt = run / "checkpoints" / "best.ckpt"
    hparams = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
    protocol = hparams["protocol"]
    assert protocol["resize"] == "longest_side" and protocol["max_side"] == 96 and protocol["image_size"] == 64
    longest = [max(Image.open(sample_root / "images" / f"{i}.png").size) for i in splits["train_ids"]]
    assert protocol["scale_median"] == pytest.approx(np.median([96 / side for side in longest]), rel=0.01)

    evaluated = evaluate(compose_config([f"ckpt={ckpt}", "num_examples=1"], config_name="evaluate"), tmp_path / "eval")
    assert evaluated["num_images"] == len(splits["val_ids"]) == report["num_images"]
    np.testing.assert_array_equal(evaluated["confusion_matrix"], report["confusion_matrix"])
    for sample_id in splits["val_ids"]:  # saved at the annotations' own size (the sample's are 256-512 px)
        with Image.open(tmp_path / "eval" / "predictions" / "masks" / f"{sample_id}.png") as img:
            assert img.size == Image.open(sample_root / "annotations" / f"{sample_id}.png").size
    at_cache = np.asarray(evaluated["train_resolution"]["confusion_matrix"]).sum()
    assert at_cache <= 96 * 96 * len(splits["val_ids"]) < np.asarray(evaluated["confusion_matrix"]).sum()

    scan = tmp_path / "scan.png"
    Image.open(sample_root / "images" / f"{splits['val_ids'][0]}.png").convert("RGB").resize((300, 200)).save(scan)
    predict(compose_config([f"ckpt={ckpt}", f"input={scan}"], config_name="predict"), tmp_path / "pred")
    mapped = json.loads((tmp_path / "pred" / "scan_report.json").read_text())
    assert mapped["protocol"] == "longest_side" and mapped["scale"] == pytest.approx(96 / 300)
    assert mapped["window"] == 64
    with Image.open(tmp_path / "pred" / "scan_mask.png") as img:
        assert img.size == (300, 200)
