"""Masked-image modelling through the U-Net itself: the self-supervised pretext `pretrain` trains.

SimMIM-style (Xie et al. 2022), at the input: random 32-px patches of the image (`mask_patch`, the U-Net's
output stride) are set to the pixel mean, the whole U-Net (encoder and decoder, with a 3-channel head) predicts
the pixels, and the loss is the L1 error on the hidden patches only. Hiding pixels rather than tokens works the
same for CNN, transformer and hybrid encoders (a token-dropping MAE needs a ViT), and the decoder learns to
rebuild detail from the encoder's pyramid, which is what a segmentation decoder does. Written by hand: smp and
timm have no masked-image pretext for a U-Net, and lightly's MAE/SimMIM heads are for ViT token sequences.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from heritage_seg.core.files import save_image
from heritage_seg.models.stored import CHECKPOINT_FORMAT
from heritage_seg.models.unet import build_unet, encoder_name, pixel_statistics
from heritage_seg.training.optim import configure_optim


def patch_mask(batch: int, height: int, width: int, patch: int, ratio: float, generator=None, device=None):
    """(B, 1, H, W) float mask, 1 on the hidden patches: exactly round(ratio * patches) per image."""
    rows, cols = height // patch, width // patch
    hidden = max(1, round(ratio * rows * cols))
    scores = torch.rand(batch, rows * cols, generator=generator, device=device)
    chosen = scores.argsort(dim=1)[:, :hidden]
    grid = torch.zeros(batch, rows * cols, device=device)
    grid.scatter_(1, chosen, 1.0)
    grid = grid.view(batch, 1, rows, cols)
    return grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


class MaskedImageModule(L.LightningModule):
    """The U-Net with a 3-channel (pixel) head, trained to fill in hidden patches. Built from the resolved
    pretrain config (`run_config`), like SegmentationModule, so `load_from_checkpoint` and resume rebuild it."""

    def __init__(self, run_config: dict[str, Any], channels_last: bool = False, model: torch.nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        config = OmegaConf.create(run_config)
        self.run_config: DictConfig = config
        encoder, name = config.encoder, encoder_name(config.encoder)
        self.model = model or build_unet(name, None, 3, encoder.kwargs)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.mask_patch = int(config.pretrain.mask_patch)
        self.mask_ratio = float(config.pretrain.mask_ratio)
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"pretrain.mask_ratio={self.mask_ratio}: must be between 0 and 1")
        if int(config.data.image_size) % self.mask_patch:
            raise ValueError(
                f"pretrain.mask_patch={self.mask_patch}: must divide data.image_size={config.data.image_size}"
            )
        mean, std = pixel_statistics(name)
        self.register_buffer("pixel_mean", mean)
        self.register_buffer("pixel_std", std)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.pixel_mean) / self.pixel_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def reconstruct(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised target, prediction) for uint8 `images` with `mask`'s patches hidden (set to the mean)."""
        target = self.normalise(images)
        return target, self.model(target * (1.0 - mask))

    def masked_l1(self, images: torch.Tensor, generator=None) -> torch.Tensor:
        b, _, h, w = images.shape
        mask = patch_mask(b, h, w, self.mask_patch, self.mask_ratio, generator, images.device)
        target, prediction = self.reconstruct(images, mask)
        error = (prediction.float() - target.float()).abs() * mask
        return error.sum() / (mask.sum() * target.shape[1]).clamp_min(1.0)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.masked_l1(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretext loss became {loss.item()} at step {self.global_step}; lower optim.lr")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        # the same hidden patches every epoch, so the validation loss is comparable from epoch to epoch
        generator = torch.Generator(device=batch.device).manual_seed(1000 + batch_idx)
        loss = self.masked_l1(batch, generator)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=len(batch), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["heritage_seg"] = {"format": CHECKPOINT_FORMAT}

    def configure_optimizers(self):
        return configure_optim(self.run_config.optim, self.parameters(), self.trainer.estimated_stepping_batches)

    @torch.no_grad()
    def picture(self, images: torch.Tensor) -> np.ndarray:
        """Rows of (image, what the model saw, its reconstruction with the visible patches kept) as uint8 HWC."""
        was_training = self.training
        self.eval()
        images = images.to(self.device)
        generator = torch.Generator(device=images.device).manual_seed(7)
        b, _, h, w = images.shape
        mask = patch_mask(b, h, w, self.mask_patch, self.mask_ratio, generator, images.device)
        target, prediction = self.reconstruct(images, mask)
        filled = target * (1 - mask) + prediction.float() * mask

        def to_uint8(x: torch.Tensor) -> np.ndarray:
            pixels = (x.float() * self.pixel_std + self.pixel_mean).clamp(0, 255).round().byte()
            return pixels.permute(0, 2, 3, 1).cpu().numpy()

        seen = to_uint8(target * (1 - mask) + mask * ((128 - self.pixel_mean) / self.pixel_std))  # grey = hidden
        rows = [np.concatenate(cols, axis=1) for cols in zip(to_uint8(target), seen, to_uint8(filled))]
        self.train(was_training)
        return np.concatenate(rows, axis=0)


class ReconstructionPictures(L.Callback):
    """Every `every_n_epochs` (and after the last epoch), `<output_dir>/epoch_NNN.png`: held-out images, what
    the model saw, and what it filled in, so a user can see that it learns."""

    def __init__(self, output_dir: str, every_n_epochs: int = 5, images: int = 4):
        self.output_dir, self.every, self.images = Path(output_dir), max(1, every_n_epochs), images

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not isinstance(pl_module, MaskedImageModule):
            return
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        images = trainer.datamodule.val_batch(self.images)
        if len(images):
            grid = pl_module.picture(images)
            scale = max(1, math.ceil(192 / images.shape[-1]))  # tiny test images are enlarged to be seen
            picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
            save_image(self.output_dir / f"epoch_{epoch:03d}.png", picture)
