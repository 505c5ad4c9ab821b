"""GPU preloading (`data.preload_to`): where the training batches are drawn from. `auto` puts the whole uint8 data
set on the GPU when training on one (185 MB for ARTeFACT at 384 px; batches taken by index in the same seeded
order), unless something must run on the host: a per-sample augmentation, or the crop protocol's crops."""

from __future__ import annotations

import logging

import numpy as np
import torch

from heritage_seg.data.cache import PreparedData

log = logging.getLogger(__name__)
PRELOAD_TARGETS = ("auto", "cpu", "cuda")


def check_preload_target(preload_to: str) -> None:
    if preload_to not in PRELOAD_TARGETS:
        raise ValueError(f"data.preload_to={preload_to}: choose one of {', '.join(PRELOAD_TARGETS)}")


def preload_device(
    preload_to: str, trainer_device: torch.device | None, host_augment: bool, crops: bool
) -> torch.device | None:
    """The device to hold the data set for training: `cuda` (the trainer's own device, so each DDP rank uses its
    GPU) or None for host RAM. `trainer_device`: where Lightning trains (None outside a Trainer)."""
    if preload_to == "cpu" or (
        preload_to == "auto" and (trainer_device is None or trainer_device.type != "cuda" or host_augment or crops)
    ):
        return None
    if crops:
        raise ValueError(
            "data.preload_to=cuda: the crop protocol (data.resize=longest_side) draws its crops on "
            "the host; use data.preload_to=auto or cpu"
        )
    if host_augment:
        raise ValueError(
            "data.preload_to=cuda: the per-sample augmentation (augment=albumentations) runs on the "
            "host; use augment=tensor (on the device) or data.preload_to=auto|cpu"
        )
    if trainer_device is not None and trainer_device.type == "cuda":
        return trainer_device
    if not torch.cuda.is_available():
        raise ValueError("data.preload_to=cuda: no CUDA device here; use data.preload_to=auto or cpu")
    return torch.device("cuda", torch.cuda.current_device())


class DeviceCopy:
    """One cached data set's images and masks on a device, copied once and kept until another is asked for (a
    progressive stage's size replaces the last; loaders already made keep their own)."""

    def __init__(self):
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._of: PreparedData | None = None

    def tensors(self, device: torch.device, data: PreparedData) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, S, S) uint8 images and (N, S, S) uint8 masks of `data` on `device`."""
        if self._tensors is None or self._tensors[0].device != device or self._of is not data:
            self._tensors = None
            images = torch.from_numpy(np.ascontiguousarray(data.images)).to(device).permute(0, 3, 1, 2)
            masks = torch.from_numpy(np.ascontiguousarray(data.masks)).to(device)
            self._tensors, self._of = (images.contiguous(), masks), data
            log.info(
                "data set on %s: %.0f MB of uint8 images and masks", device, (images.numel() + masks.numel()) / 1e6
            )
        return self._tensors
