"""Training augmentation on whole batches of tensors, on the device: random flips and 90° rotations.

The seed applied these per sample on the CPU (albumentations, still available as `augment=albumentations`).
They are pure index operations, so doing them on the batch after it reached the GPU costs almost nothing and
keeps image and mask exactly aligned. hflip, vflip and a 90° turn, each with p=0.5, draw uniformly from all 8
symmetries of the square, as HorizontalFlip + VerticalFlip + RandomRotate90 do.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchFlipRotate(nn.Module):
    def __init__(self, hflip: float = 0.5, vflip: float = 0.5, rot90: float = 0.5, seed: int | None = None):
        super().__init__()
        self.p = (float(hflip), float(vflip), float(rot90))
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _draw(self, n: int, device: torch.device) -> torch.Tensor:
        if self._generator is None:  # CPU generator: the same draws on every device, reproducible from the seed
            self._generator = torch.Generator()
            self._generator.manual_seed(self.seed if self.seed is not None else torch.initial_seed())
        flags = torch.rand(n, 3, generator=self._generator) < torch.tensor(self.p)
        if device.type == "cuda":
            flags = flags.pin_memory()  # so the copy below is truly asynchronous
        return flags.to(device, non_blocking=True)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, C, H, W), masks (N, H, W) -> the same, each sample transformed its own way.

        Each operation is computed for the whole batch and kept per sample with `torch.where`: no boolean-mask
        indexing and no `.any()`, which would each wait for the GPU (several host-device synchronisations per
        step). The draws and their order (hflip, vflip, then a 90° turn) are the same as before, so a seed gives
        the same augmented batches."""
        if self.p[2] > 0 and images.shape[-1] != images.shape[-2]:
            raise ValueError("BatchFlipRotate: rot90 needs square training images (data.image_size does this)")
        flags = self._draw(images.shape[0], images.device)
        ops = ((lambda t: t.flip(-1)), (lambda t: t.flip(-2)), (lambda t: t.rot90(1, dims=(-2, -1))))
        for column, op in enumerate(ops):
            if self.p[column] <= 0:
                continue
            chosen = flags[:, column]
            images = torch.where(chosen.view(-1, 1, 1, 1), op(images), images)
            masks = torch.where(chosen.view(-1, 1, 1), op(masks), masks)
        return images, masks
