"""Random training crops from images cached with their aspect ratio (data.resize=longest_side).

Every crop is `size` x `size` pixels at the cache's pixel density, so the model sees one density in training and
`predict` can match it on a new scan. An image smaller than a crop is padded by reflection (the way the sliding
window pads at inference) and its padded mask pixels are ignored by the loss. With `class_aware`, that share of
the crops is placed over a pixel of a damage class present in the image, the class picked uniformly among the
image's damage classes: a hair or a puncture covering 0.01 % of an image is then in about every other crop of
it instead of almost none. Written by hand: albumentations' crops draw one crop per call without class
balancing across an image's classes, and run per sample on the host anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from heritage_seg.core.geometry import centred_pads, reflect_pad


def to_item(
    image: np.ndarray, mask: np.ndarray, index: int, transform: Callable[..., Mapping[str, np.ndarray]] | None = None
) -> dict[str, torch.Tensor]:
    """One (H, W, 3) image and (H, W) mask, through the per-sample transform if any, as the model takes them:
    {'image': uint8 CHW, 'mask': int64 HW, 'index': the data-set index} (also SegmentationDataset's items)."""
    if transform is not None:
        out = transform(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask))
        image, mask = out["image"], out["mask"]
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
        "mask": torch.from_numpy(np.ascontiguousarray(mask)).long(),
        "index": torch.tensor(index),
    }


class RandomCropDataset(Dataset):
    """`crops_per_image` random crops of each chosen image per epoch -> {'image': uint8 CHW, 'mask', 'index'}.

    Randomness comes from torch's global generator (seeded by `seed_everything`, and per worker by Lightning),
    so a run's crops are reproducible like its batch order."""

    def __init__(
        self,
        images,
        masks,
        indices: np.ndarray,
        size: int,
        ignore_index: int,
        clean_id: int = 0,
        class_aware: float = 0.5,
        crops_per_image: int = 1,
        transform: Callable[..., Mapping[str, np.ndarray]] | None = None,
    ):
        if not 0.0 <= class_aware <= 1.0:
            raise ValueError(f"data.class_aware_crops={class_aware}: a share of the crops, in [0, 1]")
        if crops_per_image < 1:
            raise ValueError(f"data.crops_per_image={crops_per_image}: must be >= 1")
        self.images, self.masks, self.indices = images, masks, np.asarray(indices)
        self.size, self.ignore_index, self.clean_id = size, ignore_index, clean_id
        self.class_aware, self.crops_per_image, self.transform = class_aware, crops_per_image, transform
        self._damage: dict[int, np.ndarray] = {}  # data-set index -> damage class ids present at the cache size

    def __len__(self) -> int:
        return len(self.indices) * self.crops_per_image

    def damage_classes(self, index: int) -> np.ndarray:
        if index not in self._damage:
            present = np.flatnonzero(np.bincount(np.asarray(self.masks[index]).reshape(-1), minlength=256))
            self._damage[index] = present[(present != self.clean_id) & (present != self.ignore_index)]
        return self._damage[index]

    def _randint(self, high: int) -> int:
        """Uniform in [0, high]."""
        return int(torch.randint(0, high + 1, ()).item())

    def crop_origin(self, index: int, mask: np.ndarray) -> tuple[int, int]:
        """Top-left corner of the next crop of image `index`, whose (padded, at least crop-sized) mask is `mask`."""
        size, (height, width) = self.size, mask.shape
        damage = self.damage_classes(index)
        if len(damage) and float(torch.rand(())) < self.class_aware:
            cls = damage[self._randint(len(damage) - 1)]
            where = np.flatnonzero(mask.reshape(-1) == cls)
            y, x = divmod(int(where[self._randint(len(where) - 1)]), width)
            # the chosen pixel lands anywhere inside the crop, not always at its centre
            top = min(max(0, y - self._randint(size - 1)), height - size)
            left = min(max(0, x - self._randint(size - 1)), width - size)
            return top, left
        return self._randint(height - size), self._randint(width - size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.indices[i // self.crops_per_image])
        image, mask = np.asarray(self.images[index]), np.asarray(self.masks[index])
        height, width = mask.shape
        if height < self.size or width < self.size:  # pad small images up to one crop
            top, bottom, left, right = centred_pads(height, width, self.size)
            image = reflect_pad(image, top, bottom, left, right)
            mask = np.pad(mask, ((top, bottom), (left, right)), constant_values=self.ignore_index)
        top, left = self.crop_origin(index, mask)
        image = image[top : top + self.size, left : left + self.size]
        mask = mask[top : top + self.size, left : left + self.size]
        return to_item(image, mask, index, self.transform)
