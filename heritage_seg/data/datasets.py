"""The training and validation datasets of a cached data set: drawn from host memory (the default, and any
per-sample augmentation) or by index from tensors on the training device (data.preload_to: data/preload.py).
The crop protocol's random crops are data/crops.py's."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from heritage_seg.data.crops import to_item


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


def pass_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The collate_fn of DeviceSegmentationDataset: its `__getitems__` made the batch already."""
    return batch
