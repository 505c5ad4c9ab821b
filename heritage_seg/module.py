"""The LightningModule: U-Net + Dice/Focal loss, AdamW + OneCycle per batch, dataset-level IoU on validation."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from heritage_seg.metrics import segmentation_metrics

# Bumped when what a checkpoint holds changes in a way that later tools must know about.
CHECKPOINT_FORMAT = 1


class SegmentationModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        class_names: Sequence[str],
        ignore_index: int,
        mean: Sequence[float],
        std: Sequence[float],
        run_config: dict | None = None,
        batch_augment: nn.Module | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        # The resolved run config travels inside every checkpoint, so later tools rebuild the exact setup.
        self.save_hyperparameters(ignore=["model", "loss", "optimizer", "scheduler", "batch_augment"])
        self.channels_last = channels_last
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.loss = loss
        self.batch_augment = batch_augment  # applied on the device, training batches only
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names, self.ignore_index = list(class_names), ignore_index
        # Inputs arrive as uint8; normalise on the device with the encoder's own statistics.
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
        # torchmetrics' MulticlassJaccardIndex is this confusion matrix underneath; keeping the matrix itself lets
        # absent classes be NaN (left out of mIoU, as mmsegmentation does) instead of torchmetrics' 0 or 1,
        # and gives Dice/precision/recall from the same counts. It syncs across DDP ranks in compute().
        self.val_confmat = MulticlassConfusionMatrix(len(self.class_names), ignore_index=ignore_index)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0..255) NCHW images -> logits (N, C, H, W)."""
        x = (image.float() - self.pixel_mean) / self.pixel_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        if self.batch_augment is not None and self._trainer is not None and self.trainer.training:
            batch["image"], batch["mask"] = self.batch_augment(batch["image"], batch["mask"])
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        loss = self.loss(logits, batch["mask"])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)
        self.val_confmat.update(logits.argmax(dim=1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        metrics = segmentation_metrics(self.val_confmat.compute())
        self.val_confmat.reset()
        # val/mIoU_gt (classes present in the validation truth) is what selects best.ckpt and drives early
        # stopping (conf/train.yaml `monitor`); val/mIoU is the strict mean (truth or prediction), see metrics.py
        for key, name, bar in (("miou_gt", "val/mIoU_gt", True), ("miou", "val/mIoU", True),
                               ("mean_dice", "val/mDice", False)):
            value = metrics[key]
            self.log(name, 0.0 if np.isnan(value) else value, prog_bar=bar)
        self.log("val/pixel_accuracy", metrics["pixel_accuracy"])
        for name, iou in zip(self.class_names, metrics["iou"]):
            if not np.isnan(iou):  # absent from truth and prediction: undefined, not logged
                self.log(f"val/IoU/{name}", float(iou))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["heritage_seg"] = {"format": CHECKPOINT_FORMAT}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
