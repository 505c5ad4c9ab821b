"""A run's validation data rebuilt from what it recorded: its datamodule (data/build.py: fold, seed, split,
protocol), checked against the run's splits.json, so evaluate and export score exactly the run's validation
images."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.data.build import build_datamodule
from heritage_seg.runs.folder import SPLITS, run_dir_of
from heritage_seg.runs.records import SplitsRecord


def rebuild_validation_data(run_cfg: DictConfig, labels, ckpt: Path, root=None, batch_size=None, cache_dir=None):
    """The datamodule of the training run (same fold/seed/size), optionally with a moved data root."""
    data_cfg = run_cfg.data.copy()
    if "progressive" in data_cfg:  # validation is at the run's (final) size: no earlier stage's cache is needed
        data_cfg.progressive = None
    for key, value in (("root", root), ("batch_size", batch_size), ("cache_dir", cache_dir)):
        if value is not None:
            data_cfg[key] = value
    if not Path(str(data_cfg.root)).expanduser().exists() and data_cfg.get("sample") is None:
        raise FileNotFoundError(
            f"ckpt={ckpt}: the data it was trained on ({data_cfg.root}) is gone; pass data.root=<folder> "
            "pointing at the same data set"
        )
    datamodule = build_datamodule(run_cfg, labels, data_cfg)
    datamodule.setup("validate")
    check_against_splits(ckpt, datamodule)
    return datamodule


def check_against_splits(ckpt: Path, datamodule) -> None:
    """The rebuilt validation fold must be the one the run recorded in its splits.json."""
    splits = run_dir_of(ckpt) / SPLITS
    if splits.exists():
        expected = SplitsRecord.read(splits).val_ids
        actual = [datamodule.data.ids[i] for i in datamodule.split.val_idx]
        if expected != actual:
            raise ValueError(
                f"ckpt={ckpt}: the validation fold rebuilt from {datamodule.root} differs from the run's {splits} "
                "(data changed, or checkpoints of different folds?); it would not be the run's validation set"
            )
