"""A DataLoader over one fold's images, for one process or one DDP rank."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset


def fold_loader(dataset: Dataset, batch_size: int, train: bool, shard: bool = False, **extra: Any) -> DataLoader:
    """Training: shuffled (in the seeded order), the last partial batch dropped when there is more than one.
    `shard`: under DDP each rank gets its own images, every image exactly once (Lightning's default
    DistributedSampler pads the last shard with repeated images, which would count them twice in the synced
    confusion matrix of validation)."""
    sampler = None
    if shard and torch.distributed.is_available() and torch.distributed.is_initialized():
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) > batch_size,
        **extra,
    )
