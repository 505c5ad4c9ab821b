"""The LightningModule: U-Net + Dice/Focal loss, AdamW + OneCycle per batch, dataset-level IoU on validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from heritage_seg.core.errors import ScheduleMismatch, TrainingDiverged
from heritage_seg.data.labels import LabelMap
from heritage_seg.evaluation.metrics import segmentation_metrics
from heritage_seg.inference.sliding import protocol_probabilities
from heritage_seg.models.unet import build_unet, normalisation
from heritage_seg.runs.checkpoints import CHECKPOINT_FORMAT, read_checkpoint


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
        protocol: dict | None = None,
    ):
        super().__init__()
        # The resolved run config travels inside every checkpoint, so later tools rebuild the exact setup.
        # `protocol` (ArtefactDataModule.protocol(): resize, crop size, scale of the cached images) travels with it
        # too: predict matches a crop-trained model's pixel density on a new scan from it.
        self.save_hyperparameters(ignore=["model", "loss", "optimizer", "scheduler", "batch_augment"])
        # checkpoints made before the protocol was recorded were squash-trained at their run's image size
        self.protocol = protocol or {"resize": "squash"}
        if "image_size" not in self.protocol and run_config is not None:
            self.protocol = {**self.protocol, "image_size": run_config["data"]["image_size"]}
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
        # First global step whose training loss was not finite (-1: none). Kept on the device and read once per
        # epoch, before validation and so before any checkpoint of that epoch is written: no per-step sync.
        self.register_buffer("first_nonfinite_step", torch.tensor(-1, dtype=torch.long), persistent=False)

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
        # Not on the progress bar: Lightning converts progress-bar values to Python numbers after every batch, a
        # host-device synchronisation per step on a GPU. The logger gets the step value every log_every_n_steps.
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=batch["image"].shape[0])
        bad = ~torch.isfinite(loss.detach()) & (self.first_nonfinite_step < 0)
        self.first_nonfinite_step = torch.where(bad, self.global_step, self.first_nonfinite_step)
        return loss

    def check_finite(self) -> None:
        step = int(self.first_nonfinite_step)  # the one host-device sync, once per epoch
        if step >= 0:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
            raise TrainingDiverged(
                f"training diverged: the training loss became NaN/inf at global step {step} (epoch "
                f"{self.current_epoch + 1}, learning rate then ~{lr:.3g}). Likely cause: a learning rate far too high "
                "(lower optim.lr, or run python -m heritage_seg.lr_find) or fp16 overflow (trainer.precision="
                "bf16-mixed or 32-true). Nothing of this epoch was saved; checkpoints/last.ckpt is from before the "
                "divergence. Start a new run with a lower optim.lr."
            )

    def on_validation_epoch_start(self) -> None:
        if self._trainer is not None and not self.trainer.sanity_checking:
            self.check_finite()

    def on_train_epoch_end(self) -> None:
        self.check_finite()  # for runs without validation

    def on_train_start(self) -> None:
        """On resume, Lightning restores OneCycle as it was laid out: for the original number of steps."""
        expected = int(self.trainer.estimated_stepping_batches)
        for config in self.trainer.lr_scheduler_configs:
            total = getattr(config.scheduler, "total_steps", None)
            if total is not None and total != expected:
                raise ScheduleMismatch(
                    f"resume: the learning-rate schedule restored from the checkpoint is laid out for {total} steps, "
                    f"but this command trains for {expected} (data.batch_size, trainer.devices, "
                    "trainer.accumulate_grad_batches, trainer.limit_train_batches or the data differ from the run's). "
                    "Resume with the run's own settings, or start a new run."
                )

    def validation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Squash protocol: the model on the batch. Crop protocol: each whole (cached) image by sliding windows
        of the crop size, as predict maps a scan; the blended probabilities p are returned as logits log p
        (softmax gives p back, so Dice and cross-entropy see them exactly; the focal term, per class on a
        sigmoid, sees p / (1 + p): val/loss compares epochs of one run, not the two protocols)."""
        if self.protocol.get("resize") != "longest_side":
            return self(images)
        return protocol_probabilities(self.protocol)(self, images).clamp_min(1e-6).log()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.validation_logits(batch["image"])
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


def load_trained_module(path: str | Path) -> tuple[SegmentationModule, DictConfig, LabelMap]:
    """The trained module (eval mode, CPU), the resolved config it was trained with, and its label map."""
    checkpoint = read_checkpoint(path)
    run_cfg = OmegaConf.create(checkpoint["hyper_parameters"]["run_config"])
    labels = LabelMap.from_config(run_cfg.labels)
    encoder = run_cfg.encoder
    model = build_unet(encoder.name, None, labels.num_classes, encoder.kwargs)  # weights come from the checkpoint
    mean, std = normalisation(encoder.name)
    module = SegmentationModule(model=model, loss=nn.Identity(), optimizer=None, scheduler=None,
                                class_names=labels.names, ignore_index=labels.ignore_index, mean=mean, std=std,
                                run_config=checkpoint["hyper_parameters"]["run_config"],
                                protocol=checkpoint["hyper_parameters"].get("protocol"))
    try:
        missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as err:  # shape mismatch, e.g. a label map with another number of classes
        raise ValueError(
            f"ckpt={path}: its weights do not fit a {encoder.name} U-Net with the {labels.num_classes} classes of "
            f"its label map ({str(err).splitlines()[-1].strip()})"
        ) from err
    wrong = [k for k in missing + unexpected if not k.startswith(("val_confmat", "loss."))]  # not model weights
    if wrong:
        raise ValueError(f"ckpt={path}: weights do not fit the {encoder.name} U-Net it names ({wrong[:3]} …)")
    return module.eval(), run_cfg, labels
