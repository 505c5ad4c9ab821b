"""The LightningDataModule: prepare (generate sample / build cache), choose the fold, serve uint8 batches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import (
    PreparedData,
    build_cache,
    cache_path,
    default_cache_dir,
    load_cache,
)
from heritage_seg.data.crops import RandomCropDataset, to_item
from heritage_seg.data.folds import (
    DEFAULT_SPLIT,
    SPLITS,
    FoldSplit,
    keep_training_fraction,
    leave_one_group_out,
    make_split,
    splits_payload,
)
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.progressive import parse_stages, stage_at
from heritage_seg.data.readers import DEFAULT_SOURCE_PATTERN, open_reader
from heritage_seg.data.sample import generate_sample

log = logging.getLogger(__name__)


class SegmentationDataset(Dataset):
    """Images (N, S, S, 3) uint8 and masks (N, S, S) uint8 -> {'image': uint8 CHW, 'mask': int64 HW}."""

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        indices: np.ndarray,
        transform: Callable[..., Mapping[str, np.ndarray]] | None = None,
    ):
        self.images, self.masks, self.indices, self.transform = images, masks, np.asarray(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.indices[i])
        return to_item(np.asarray(self.images[index]), np.asarray(self.masks[index]), index, self.transform)


class DeviceSegmentationDataset(Dataset):
    """The same batches as SegmentationDataset, drawn by index from uint8 tensors that already live on the
    training device (data.preload_to=cuda): no per-step collation, pinning or host-to-device copy of images.

    The DataLoader (and so its sampler, shuffling and seeded order, and the DDP sampler Lightning puts in) is the
    same as on the host path; `__getitems__` receives a whole batch of indices and `collate_fn` passes it on."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, indices: np.ndarray):
        self.images, self.masks = images, masks  # (N, 3, S, S) and (N, S, S) uint8 on the device
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        index = self.indices[positions]
        on_device = index.to(self.images.device, non_blocking=True)
        return {"image": self.images[on_device], "mask": self.masks[on_device].long(), "index": index}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([i])
        return {key: value[0] for key, value in batch.items()}


def _pass_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


PRELOAD_TARGETS = ("auto", "cpu", "cuda")


class ArtefactDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str,
        labels: LabelMap,
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
        if preload_to not in PRELOAD_TARGETS:
            raise ValueError(f"data.preload_to={preload_to}: choose one of {', '.join(PRELOAD_TARGETS)}")
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
        self.image_size, self.batch_size = image_size, batch_size
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
        if split not in SPLITS:
            raise ValueError(
                f"split={split}: choose source (K-fold over source images), material or content "
                "(leave one material / content type out)"
            )
        self.split_kind = split
        self.preload_to = preload_to
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None
        self._on_device_of: PreparedData | None = None
        self.data: PreparedData | None = None
        self.split: FoldSplit | None = None

    def prepare_data(self) -> None:
        """Single-process work: generate the sample folder, decode + resize once into the cache."""
        if self.sample is not None:
            generate_sample(self.root, self.labels, **self.sample)
        reader = open_reader(self.root, self.source_id_pattern)
        build_cache(reader, self.sizing, self.labels, self.cache_dir)
        for sizing in self._stage_sizings().values():  # squash: one cache per size, resampled as a fixed run's
            build_cache(reader, sizing, self.labels, self.cache_dir)

    def _stage_sizings(self) -> dict[int, Protocol]:
        if self.sizing.crops:  # crops of each stage's size are drawn from the one cache
            return {}
        return {s.size: self.sizing.at_size(s.size) for s in self.stages if s.size != self.sizing.image_size}

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        reader = open_reader(self.root, self.source_id_pattern)
        path = cache_path(self.cache_dir, reader, self.sizing, self.labels)
        if not (path / "meta.json").exists():
            raise RuntimeError(f"{path}: data cache missing; call prepare_data() first")
        self.data = load_cache(path, preload=self.use_preload)
        for size, sizing in self._stage_sizings().items():
            stage_path = cache_path(self.cache_dir, reader, sizing, self.labels)
            if not (stage_path / "meta.json").exists():
                raise RuntimeError(f"{stage_path}: data cache missing; call prepare_data() first")
            self.stage_data[size] = load_cache(stage_path, preload=self.use_preload)
            if self.stage_data[size].ids != self.data.ids:
                raise RuntimeError(f"{stage_path}: holds other images than {path}; delete both and run again")
        presence = self.data.class_presence(self.labels.num_classes)
        sources = [r.source_id for r in self.data.records]
        if self.split_kind == "source":
            self.split = make_split(sources, presence, self.fold, self.n_folds, self.seed)
        else:
            groups = [getattr(r, self.split_kind) for r in self.data.records]
            self.split = leave_one_group_out(sources, groups, self.fold, self.split_kind)
            log.info(
                "split=%s: fold %d holds out '%s' (%d groups: %s)",
                self.split_kind,
                self.fold,
                self.split.held_out,
                len(self.split.groups),
                ", ".join(self.split.groups),
            )
        self.split = keep_training_fraction(self.split, sources, self.train_fraction, self.seed)
        share = f", {self.train_fraction:.0%} of its training sources" if self.train_fraction < 1 else ""
        log.info(
            "fold %d/%d: %d train / %d val images (%d / %d sources)%s",
            self.fold,
            self.n_folds,
            len(self.split.train_idx),
            len(self.split.val_idx),
            len({sources[i] for i in self.split.train_idx}),
            len({sources[i] for i in self.split.val_idx}),
            share,
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
                "image_size": self.image_size,
                "resize": self.sizing.resize,
                "max_side": self.sizing.max_side,
                **extra,
            },
        )

    def _require_setup(self) -> None:
        if self.data is None or self.split is None:
            raise RuntimeError("ArtefactDataModule: call prepare_data() and setup() first")

    def _device(self) -> torch.device | None:
        """Where the data set lives for training: `cuda` (the trainer's own device, so each DDP rank uses its
        GPU) or None for host RAM. `auto` = on the GPU when training on one, unless a per-sample (CPU)
        augmentation or the crop protocol (images of many sizes, cropped on the host) needs the host path."""
        trainer_device = self.trainer.strategy.root_device if self.trainer is not None else None
        if self.preload_to == "cpu" or (
            self.preload_to == "auto"
            and (trainer_device is None or trainer_device.type != "cuda" or self.augment is not None or self.crops)
        ):
            return None
        if self.crops:
            raise ValueError(
                "data.preload_to=cuda: the crop protocol (data.resize=longest_side) draws its crops on "
                "the host; use data.preload_to=auto or cpu"
            )
        if self.augment is not None:
            raise ValueError(
                "data.preload_to=cuda: the per-sample augmentation (augment=albumentations) runs on the "
                "host; use augment=tensor (on the device) or data.preload_to=auto|cpu"
            )
        if trainer_device is not None and trainer_device.type == "cuda":
            return trainer_device
        if not torch.cuda.is_available():
            raise ValueError("data.preload_to=cuda: no CUDA device here; use data.preload_to=auto or cpu")
        return torch.device("cuda", torch.cuda.current_device())

    def _device_tensors(self, device: torch.device, data: PreparedData) -> tuple[torch.Tensor, torch.Tensor]:
        if self._on_device is None or self._on_device[0].device != device or self._on_device_of is not data:
            self._on_device = None  # a progressive stage's size replaces the last (loaders keep their own)
            images = torch.from_numpy(np.ascontiguousarray(data.images)).to(device).permute(0, 3, 1, 2)
            masks = torch.from_numpy(np.ascontiguousarray(data.masks)).to(device)
            self._on_device, self._on_device_of = (images.contiguous(), masks), data
            log.info(
                "data set on %s: %.0f MB of uint8 images and masks", device, (images.numel() + masks.numel()) / 1e6
            )
        return self._on_device

    def _loader(self, indices: np.ndarray, train: bool, shard: bool = False, size: int | None = None) -> DataLoader:
        """`size`: a progressive stage's training size (None: the run's image_size)."""
        self._require_setup()
        device = self._device()
        size = size or self.image_size
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
            dataset = DeviceSegmentationDataset(*self._device_tensors(device, data), indices)
            extra = {"collate_fn": _pass_batch, "num_workers": 0, "pin_memory": False}
        else:
            dataset = SegmentationDataset(data.images, data.masks, indices, self.augment if train else None)
            if self.crops:  # validation: whole images of different sizes, one at a time (sliding windows)
                batch_size = 1
        sampler = None
        if shard and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's default DistributedSampler pads the last shard with repeated images, which would count
            # them twice in the synced confusion matrix; this sampler gives every image to exactly one rank.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(dataset) > batch_size,
            **extra,
        )

    def train_dataloader(self) -> DataLoader:
        if not self.stages:
            return self._loader(self.split.train_idx, train=True)
        # progressive: Lightning asks again each epoch (reload_dataloaders_every_n_epochs=1), a resumed run too
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        stage = stage_at(self.stages, epoch)
        log.info(
            "data.progressive: epoch %d trains at %d px (stage %d of %d), validation at %d px",
            epoch + 1,
            stage.size,
            self.stages.index(stage) + 1,
            len(self.stages),
            self.image_size,
        )
        return self._loader(self.split.train_idx, train=True, size=stage.size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split.val_idx, train=False, shard=True)

    def full_val_dataloader(self) -> DataLoader:
        """The whole validation fold in one process (end-of-fit evaluation on rank 0)."""
        return self._loader(self.split.val_idx, train=False)
