"""The datamodule serves the chosen fold: augmented, aligned training batches; untouched validation batches."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from heritage_seg.data.datasets import SegmentationDataset
from heritage_seg.data.download import HubUnreachable, download
from heritage_seg.data.preload import preload_device
from tests.conftest import compose_config


def _datamodule(sample_root, labels, **overrides):
    cfg = compose_config(["data=sample", f"data.root={sample_root}", "data.image_size=64", "run_dir=/tmp/x"])
    dm = instantiate(cfg.data, _partial_=True)(labels=labels, fold=1, n_folds=3, seed=42, **overrides)
    dm.prepare_data()
    dm.setup("fit")
    return dm, cfg


def test_validation_batches_are_the_cached_images_unaugmented(sample_root, labels):
    dm, _ = _datamodule(sample_root, labels)
    batch = next(iter(dm.val_dataloader()))
    first = dm.split.val_idx[0]
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (3, 64, 64)
    np.testing.assert_array_equal(batch["image"][0].permute(1, 2, 0).numpy(), dm.data.images[first])
    np.testing.assert_array_equal(batch["mask"][0].numpy(), dm.data.masks[first])


def test_memory_mapped_data_equals_preloaded_data(sample_root, labels):
    preloaded, _ = _datamodule(sample_root, labels)
    mapped, _ = _datamodule(sample_root, labels, use_preload=False)
    assert isinstance(mapped.data.images, np.memmap) and not isinstance(preloaded.data.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped.data.masks), preloaded.data.masks)


def test_training_augmentation_keeps_image_and_mask_aligned(sample_root, labels):
    cfg = compose_config(["augment=albumentations", "run_dir=/tmp/x"])
    augment = instantiate(cfg.augment.sample)
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 16, (1, 32, 32), dtype=np.uint8)
    image = np.repeat(mask[..., None] * 10, 3, axis=-1)  # the image spells out its own mask
    dataset = SegmentationDataset(image, mask, [0], augment)
    seen = set()
    for _ in range(40):
        item = dataset[0]
        np.testing.assert_array_equal(item["image"][0].numpy(), item["mask"].numpy() * 10)
        seen.add(item["mask"].numpy().tobytes())
    assert len(seen) >= 4, "flips and rotations must actually happen"


def test_class_counts_come_from_the_training_fold_and_skip_ignored_pixels(sample_root, labels):
    dm, _ = _datamodule(sample_root, labels)
    counts = dm.train_class_pixel_counts()
    train_masks = dm.data.masks[dm.split.train_idx]
    assert counts.sum() == (train_masks != labels.ignore_index).sum()
    assert counts[0] == (train_masks == 0).sum()
    all_counts = dm.data.class_pixel_counts(labels.num_classes)
    assert (all_counts >= counts).all() and (all_counts != counts).any()


def test_download_offline_fails_fast_and_says_where_files_go(tmp_path):
    with pytest.raises(HubUnreachable, match=rf"{tmp_path / 'artefact'}/data/train-\*\.parquet"):
        download(tmp_path / "artefact", "danielaivanova/damaged-media")
    assert not (tmp_path / "artefact").exists()


@pytest.mark.parametrize("module", ["heritage_seg.download", "heritage_seg.data.download"])
def test_the_download_command_and_its_earlier_spelling_fail_fast_offline(module, tmp_path, spawns):
    """`python -m heritage_seg.download` is the command; the spelling of earlier versions still runs it, saying so."""
    proc = subprocess.run(
        [sys.executable, "-m", module, f"root={tmp_path / 'artefact'}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 2, printed[-2000:]
    assert "cannot reach the Hugging Face hub" in printed and "Traceback" not in printed
    moved = "python -m heritage_seg.data.download is now python -m heritage_seg.download"
    assert (moved in printed) == (module == "heritage_seg.data.download")


def test_batches_drawn_on_the_device_equal_the_host_path_in_the_same_seeded_order(sample_root, labels, monkeypatch):
    """data.preload_to=cuda keeps the DataLoader (sampler, seeded shuffling) and only changes where the batch
    is taken from; checked here with the device path pointed at the CPU."""
    host, _ = _datamodule(sample_root, labels, eval_batch_size=4)  # several validation batches
    device, _ = _datamodule(sample_root, labels, eval_batch_size=4)
    monkeypatch.setattr(device, "_device", lambda: torch.device("cpu"))
    for train in (True, False):
        torch.manual_seed(5)
        expected = list(host.train_dataloader() if train else host.val_dataloader())
        torch.manual_seed(5)
        got = list(device.train_dataloader() if train else device.val_dataloader())
        assert len(got) == len(expected) > 1
        for a, b in zip(got, expected):
            assert set(a) == set(b) == {"image", "mask", "index"}
            for key in a:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_preload_to_is_checked(sample_root, labels):
    with pytest.raises(ValueError, match="data.preload_to=gpu: choose one of auto, cpu, cuda"):
        _datamodule(sample_root, labels, preload_to="gpu")
    dm, _ = _datamodule(sample_root, labels, preload_to="auto")
    assert dm._device() is None  # no trainer on a GPU: batches come from host RAM, as before
    if not torch.cuda.is_available():
        dm, _ = _datamodule(sample_root, labels, preload_to="cuda")
        with pytest.raises(ValueError, match="data.preload_to=cuda: no CUDA device here"):
            dm.train_dataloader()


def test_where_batches_come_from_follows_the_trainer_and_refuses_what_needs_the_host():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert preload_device("auto", None, host_augment=False, crops=False) is None  # no trainer: host RAM
    assert preload_device("auto", cpu, host_augment=False, crops=False) is None
    assert preload_device("auto", gpu, host_augment=False, crops=False) == gpu  # each DDP rank: its own GPU
    assert preload_device("auto", gpu, host_augment=True, crops=False) is None  # albumentations runs on the host
    assert preload_device("auto", gpu, host_augment=False, crops=True) is None  # crops are cut on the host
    assert preload_device("cpu", gpu, host_augment=False, crops=False) is None
    assert preload_device("cuda", gpu, host_augment=False, crops=False) == gpu
    with pytest.raises(ValueError, match="crop protocol .* use data.preload_to=auto or cpu"):
        preload_device("cuda", gpu, host_augment=False, crops=True)
    with pytest.raises(ValueError, match="augment=albumentations.* use augment=tensor"):
        preload_device("cuda", gpu, host_augment=True, crops=False)


def test_validation_batches_have_their_own_size(sample_root, labels):
    """data.eval_batch_size: validation/evaluation batches (no gradients) larger than training ones; null = the
    training batch size (and what checkpoints made before the option rebuild)."""
    for overrides, expected in (({}, 32), ({"eval_batch_size": None}, 4)):
        datamodule, _ = _datamodule(sample_root, labels, **overrides)
        assert datamodule.train_dataloader().batch_size == 4
        assert datamodule.val_dataloader().batch_size == datamodule.full_val_dataloader().batch_size == expected
    with pytest.raises(ValueError, match="data.eval_batch_size=0: must be >= 1"):
        _datamodule(sample_root, labels, eval_batch_size=0)
