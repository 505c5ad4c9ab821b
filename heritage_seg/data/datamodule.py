"""The LightningDataModule: prepare (generate sample / build cache), choose the fold, serve uint8 batches. What it
composes has its own home: the protocol (core/protocol.py), the cache (cache.py), fold choice (folds.py), the
progressive stages (progressive.py), GPU preloading (preload.py), the datasets (datasets.py, crops.py) and the
loaders with the DDP sampler (loaders.py)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import PreparedData, build_cache, cache_path, default_cache_dir, load_cache
from heritage_seg.data.crops import RandomCropDataset
from heritage_seg.data.datasets import DeviceSegmentationDataset, SegmentationDataset, pass_batch
from heritage_seg.data.folds import DEFAULT_SPLIT, FoldSplit, check_split_kind, choose_split, splits_payload
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.loaders import fold_loader
from heritage_seg.data.preload import DeviceCopy, check_preload_target, preload_device
from heritage_seg.data.progressive import parse_stages, stage_protocols, training_stage
from heritage_seg.data.readers import DEFAULT_SOURCE_PATTERN, open_reader
from heritage_seg.data.sample import generate_sample

log = logging.getLogger(__name__)


class ArtefactDataModule(L.LightningDataModule):
    """An ARTeFACT-format data set (parquet shards or a folder) for one fold of one run. Its options are the `data`
    config's keys (conf/data/artefact.yaml says what each is) with the run's fold, n_folds, seed and split, as
    data/build.py passes them; each is checked where its concept lives (protocol, folds, stages, preloading)."""

    def __init__(
        self,
        root: str,
        labels: LabelMap,
        *,
        fold: int = 0,
        n_folds: int = 3,
        seed: int = 42,
        image_size: int = 384,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = True,
        use_preload: bool = True,
        cache_dir: str | None = None,
        source_id_pattern: str = DEFAULT_SOURCE_PATTERN,
        augment: Callable[..., Mapping[str, np.ndarray]] | None = None,
        sample: Mapping[str, Any] | None = None,
        split: str = DEFAULT_SPLIT,
        preload_to: str = "auto",
        resize: str = "squash",
        max_side: int = 1024,
        class_aware_crops: float = 0.5,
        crops_per_image: int = 1,
        train_fraction: float = 1.0,
        progressive: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__()
        check_preload_target(preload_to)
        check_split_kind(split)
        # squash: every image image_size x image_size (the seed's protocol). longest_side: cached with the longest
        # side at most max_side (aspect kept, never upscaled); training on random image_size crops, validation
        # by sliding windows over each whole cached image (the crop protocol, heritage_seg/data/crops.py)
        self.sizing = Protocol.from_data_config({"resize": resize, "image_size": image_size, "max_side": max_side})
        self.class_aware_crops, self.crops_per_image = class_aware_crops, crops_per_image
        # data.progressive: training sizes by epoch (heritage_seg/data/progressive.py); validation at image_size
        self.stages = parse_stages(progressive, self.sizing)
        if self.stages and self.stages[-1].size != image_size:
            raise ValueError(
                f"data.progressive ends at {self.stages[-1].size} px but data.image_size={image_size}: the last stage "
                "is the run's size"
            )
        self.stage_data: dict[int, PreparedData] = {}  # squash: the training images at each earlier stage's size
        if not 0 < float(train_fraction) <= 1:
            raise ValueError(f"data.train_fraction={train_fraction}: must be in (0, 1]")
        self.train_fraction = float(train_fraction)
        self.root = Path(root).expanduser()
        self.labels = labels
        self.fold, self.n_folds, self.seed = fold, n_folds, seed
        self.batch_size = batch_size
        # validation and evaluation batches (no gradients kept): larger ones keep a GPU busy; None = batch_size
        if eval_batch_size is not None and int(eval_batch_size) < 1:
            raise ValueError(
                f"data.eval_batch_size={eval_batch_size}: must be >= 1 (or null: the training data.batch_size)"
            )
        self.eval_batch_size = int(batch_size if eval_batch_size is None else eval_batch_size)
        self.num_workers, self.pin_memory, self.use_preload = num_workers, pin_memory, use_preload
        self.cache_dir = cache_dir or default_cache_dir()
        self.source_id_pattern = source_id_pattern
        self.augment = augment
        self.sample = dict(sample) if sample else None
        self.split_kind = split
        self.preload_to = preload_to
        self._on_device = DeviceCopy()
        self.data: PreparedData | None = None
        self.split: FoldSplit | None = None

    def prepare_data(self) -> None:
        """Single-process work: generate the sample folder, decode + resize once into the cache."""
        if self.sample is not None:
            generate_sample(self.root, self.labels, **self.sample)
        reader = open_reader(self.root, self.source_id_pattern)
        build_cache(reader, self.sizing, self.labels, self.cache_dir)
        for sizing in stage_protocols(self.stages, self.sizing).values():  # squash: one cache per earlier size
            build_cache(reader, sizing, self.labels, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        reader = open_reader(self.root, self.source_id_pattern)
        path = cache_path(self.cache_dir, reader, self.sizing, self.labels)
        if not (path / "meta.json").exists():
            raise RuntimeError(f"{path}: data cache missing; call prepare_data() first")
        self.data = load_cache(path, preload=self.use_preload)
        for size, sizing in stage_protocols(self.stages, self.sizing).items():
            stage_path = cache_path(self.cache_dir, reader, sizing, self.labels)
            if not (stage_path / "meta.json").exists():
                raise RuntimeError(f"{stage_path}: data cache missing; call prepare_data() first")
            self.stage_data[size] = load_cache(stage_path, preload=self.use_preload)
            if self.stage_data[size].ids != self.data.ids:
                raise RuntimeError(f"{stage_path}: holds other images than {path}; delete both and run again")
        sources = [r.source_id for r in self.data.records]
        self.split = choose_split(
            sources,
            self.data.class_presence(self.labels.num_classes),
            self.split_kind,
            self.fold,
            self.n_folds,
            self.seed,
            self.train_fraction,
            [getattr(r, self.split_kind) for r in self.data.records] if self.split_kind != "source" else None,
        )

    @property
    def crops(self) -> bool:
        """The crop protocol: random crops in training, sliding windows over whole images in validation."""
        return self.sizing.crops

    def protocol(self) -> Protocol:
        """The training protocol as a checkpoint records it, for predict to match it on a scan: for crops also
        how the training fold's cached longest sides relate to the originals' (their scale)."""
        self._require_setup()
        if not self.crops:
            return self.sizing
        native = self.data.native_masks.shapes[self.split.train_idx].max(axis=1)
        cached = np.asarray([max(self.data.masks[i].shape) for i in self.split.train_idx])
        scales = cached / native
        return dataclasses.replace(
            self.sizing,
            scale_median=float(np.median(scales)),
            scale_min=float(scales.min()),
            scale_max=float(scales.max()),
        )

    def train_class_pixel_counts(self) -> np.ndarray:
        """Pixels per class over the TRAINING fold only: the basis of the class weights."""
        self._require_setup()
        return self.data.class_pixel_counts(self.labels.num_classes, self.split.train_idx)

    def splits_record(self, **extra: Any) -> dict[str, Any]:
        """The fold as splits.json records it (heritage_seg.runs.records.SplitsRecord)."""
        self._require_setup()
        return splits_payload(
            self.split,
            self.data.ids,
            [r.source_id for r in self.data.records],
            {
                "root": str(self.root),
                "image_size": self.sizing.image_size,
                "resize": self.sizing.resize,
                "max_side": self.sizing.max_side,
                **extra,
            },
        )

    def _require_setup(self) -> None:
        if self.data is None or self.split is None:
            raise RuntimeError("ArtefactDataModule: call prepare_data() and setup() first")

    def _device(self) -> torch.device | None:
        """Where the training batches are drawn from (data/preload.py): the trainer's GPU, or None for host RAM."""
        trainer_device = self.trainer.strategy.root_device if self.trainer is not None else None
        return preload_device(self.preload_to, trainer_device, self.augment is not None, self.crops)

    def _loader(self, indices: np.ndarray, train: bool, shard: bool = False, size: int | None = None) -> DataLoader:
        """`size`: a progressive stage's training size (None: the run's image_size)."""
        self._require_setup()
        device = self._device()
        size = size or self.sizing.image_size
        data = self.stage_data.get(size, self.data)
        batch_size = self.batch_size if train else self.eval_batch_size
        extra = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "persistent_workers": self.num_workers > 0,
        }  # host RAM through the DataLoader
        if self.crops and train:
            dataset = RandomCropDataset(
                self.data.images,
                self.data.masks,
                indices,
                size,
                self.labels.ignore_index,
                clean_id=self.labels.clean_index,
                class_aware=self.class_aware_crops,
                crops_per_image=self.crops_per_image,
                transform=self.augment,
            )
        elif device is not None:
            dataset = DeviceSegmentationDataset(*self._on_device.tensors(device, data), indices)
            extra = {"collate_fn": pass_batch, "num_workers": 0, "pin_memory": False}
        else:
            dataset = SegmentationDataset(data.images, data.masks, indices, self.augment if train else None)
            if self.crops:  # validation: whole images of different sizes, one at a time (sliding windows)
                batch_size = 1
        return fold_loader(dataset, batch_size, train, shard, **extra)

    def train_dataloader(self) -> DataLoader:
        if not self.stages:
            return self._loader(self.split.train_idx, train=True)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        stage = training_stage(self.stages, epoch, self.sizing.image_size)
        return self._loader(self.split.train_idx, train=True, size=stage.size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split.val_idx, train=False, shard=True)

    def full_val_dataloader(self) -> DataLoader:
        """The whole validation fold in one process (end-of-fit evaluation on rank 0)."""
        return self._loader(self.split.val_idx, train=False)
