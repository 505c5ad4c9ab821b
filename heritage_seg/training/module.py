"""The LightningModule: U-Net + Dice/Focal loss, AdamW + OneCycle per batch, dataset-level IoU on validation.

It builds its own network (models/trained.py's SegmentationNetwork, as inference builds it), loss, optimiser
and batch augmentation from its hyper-parameters (the resolved run config, the training protocol and the class
weights fitted to the training fold), as TorchGeo's trainers do, so a checkpoint's plain hyper-parameters rebuild
the trained model: heritage_seg.models.trained.load_model (what every command loads models with).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from heritage_seg.core.cli import instantiate_or_user_error
from heritage_seg.core.errors import ScheduleMismatch, TrainingDiverged
from heritage_seg.data.labels import LabelMap
from heritage_seg.evaluation.metrics import binary_metrics, segmentation_metrics
from heritage_seg.inference.sliding import protocol_probabilities
from heritage_seg.models.heads import task_lookup, task_to_fine
from heritage_seg.models.stored import CHECKPOINT_FORMAT
from heritage_seg.models.trained import TRAINING_ONLY, SegmentationNetwork
from heritage_seg.training.optim import configure_optim

# `_target_`s that run configs inside checkpoints made before the package's subpackages still name
MOVED_TARGETS = {"heritage_seg.losses.DiceFocalLoss": "heritage_seg.training.losses.DiceFocalLoss"}


def _node(config: Any) -> Any:
    """A config node as instantiate takes it, with a target that moved since the run renamed to its new home."""
    if isinstance(config, Mapping) and config.get("_target_") in MOVED_TARGETS:
        config = {**config, "_target_": MOVED_TARGETS[config["_target_"]]}
    return config


def _loss(config: DictConfig, record: Mapping[str, Any]) -> nn.Module:
    """A `conf/loss` node instantiated with the class weights and Dice classes of its class_weights.json record
    (checkpoints from before the record: none, the loss is not needed to use them)."""
    fitted = (
        {"class_weights": record["weights"], "dice_classes": record.get("dice_classes")} if "weights" in record else {}
    )
    return instantiate_or_user_error({**_node(OmegaConf.to_container(config, resolve=True)), **fitted})


class SegmentationModule(SegmentationNetwork, L.LightningModule):
    def __init__(
        self,
        run_config: Mapping[str, Any],
        protocol: Mapping[str, Any] | None = None,
        class_weights: Mapping[str, Any] | None = None,
        pretrained: bool = False,
        channels_last: bool = False,
        model: nn.Module | None = None,
        loss: nn.Module | None = None,
        temperature: float = 1.0,
    ):
        """`run_config`: the resolved training config (encoder, labels, loss, optim, augment, data); `protocol`:
        how the training images were sized (ArtefactDataModule.protocol().to_dict()), for predict to match a scan;
        `class_weights`: the training fold's loss weights and Dice classes (class_weights.json's record).
        Not recorded in checkpoints: `pretrained` (load the encoder weights `run_config` names; a checkpoint brings
        its own), `channels_last` (the training device's memory layout), and `model` / `loss`, which replace the
        ones `run_config` names (tests and benchmarks). `temperature`: the logits are divided by it (1 when trained;
        a copy of the checkpoint written by `evaluate calibrate=true` holds the one fitted on its validation fold),
        which changes the probabilities and confidences, never the predicted class."""
        super().__init__()
        self.save_hyperparameters(ignore=["pretrained", "channels_last", "model", "loss"])
        config = OmegaConf.create(dict(run_config))
        labels = LabelMap.from_config(config.labels, "the run config's labels")
        # the network as inference runs it (models/trained.py): U-Net, extra heads, normalisation, temperature
        self._build_network(config, labels, protocol, temperature, pretrained, model, channels_last)
        record = class_weights or {}
        if loss is None:
            loss = _loss(config.loss, record)
        self.loss = loss
        # applied on the device to training batches only (conf/augment: `batch`); per-sample ones are the data's
        batch = OmegaConf.select(config, "augment.batch")
        self.batch_augment = instantiate(batch) if batch is not None else None
        self.class_names, self.ignore_index = list(labels.names), labels.ignore_index
        self.clean_index = labels.clean_index
        # each extra head (heads=multitask) has its loss, fitted to the training fold like the fine loss
        # (class_weights.json `heads`)
        fitted_heads = record.get("heads") or {}
        self.aux_losses = nn.ModuleDict(
            {task: _loss(config.heads[task].loss, fitted_heads.get(task) or {}) for task in self.aux_weights}
        )
        for task in self.aux_weights:  # mask value -> the task's class, on the device with the batch
            lookup = task_lookup(task_to_fine(labels, task), labels.ignore_index)
            self.register_buffer(f"{task}_lookup", lookup, persistent=False)
        # torchmetrics' MulticlassJaccardIndex is this confusion matrix underneath; keeping the matrix itself lets
        # absent classes be NaN (left out of mIoU, as mmsegmentation does) instead of torchmetrics' 0 or 1,
        # and gives Dice/precision/recall from the same counts. It syncs across DDP ranks in compute().
        self.val_confmat = MulticlassConfusionMatrix(len(self.class_names), ignore_index=self.ignore_index)
        # First global step whose training loss was not finite (-1: none). Kept on the device and read once per
        # epoch, before validation and so before any checkpoint of that epoch is written: no per-step sync.
        self.register_buffer("first_nonfinite_step", torch.tensor(-1, dtype=torch.long), persistent=False)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        if self.batch_augment is not None and self._trainer is not None and self.trainer.training:
            batch["image"], batch["mask"] = self.batch_augment(batch["image"], batch["mask"])
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.aux_heads is None:
            loss = self.loss(self(batch["image"]), batch["mask"])
        else:
            loss = self._multitask_loss(batch)
        # Not on the progress bar: Lightning converts progress-bar values to Python numbers after every batch, a
        # host-device synchronisation per step on a GPU. The logger gets the step value every log_every_n_steps.
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=batch["image"].shape[0])
        bad = ~torch.isfinite(loss.detach()) & (self.first_nonfinite_step < 0)
        self.first_nonfinite_step = torch.where(bad, self.global_step, self.first_nonfinite_step)
        return loss

    def _multitask_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """fine loss + weight x each extra head's loss on the mask collapsed to its task; each part is logged."""
        logits, mask, n = self.task_logits(batch["image"]), batch["mask"], batch["image"].shape[0]
        loss = self.loss(logits["fine"], mask)
        self.log("train/loss_fine", loss, on_step=True, on_epoch=True, batch_size=n)
        for task, weight in self.aux_weights.items():
            part = self.aux_losses[task](logits[task], getattr(self, f"{task}_lookup")[mask.long()])
            self.log(f"train/loss_{task}", part, on_step=True, on_epoch=True, batch_size=n)
            loss = loss + weight * part
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
        if not self.protocol.crops:
            return self(images)
        return protocol_probabilities(self.protocol)(self, images).clamp_min(1e-6).log()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.validation_logits(batch["image"])
        loss = self.loss(logits, batch["mask"])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)
        self.val_confmat.update(logits.argmax(dim=1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        confmat = self.val_confmat.compute()
        metrics = segmentation_metrics(confmat)
        self.val_confmat.reset()
        # val/mIoU_gt (classes present in the validation truth) is what selects best.ckpt and drives early
        # stopping (conf/train.yaml `monitor`); val/mIoU is the strict mean (truth or prediction), see metrics.py
        for key, name, bar in (
            ("miou_gt", "val/mIoU_gt", True),
            ("miou", "val/mIoU", True),
            ("mean_dice", "val/mDice", False),
        ):
            value = metrics[key]
            self.log(name, 0.0 if np.isnan(value) else value, prog_bar=bar)
        self.log("val/pixel_accuracy", metrics["pixel_accuracy"])
        damage = binary_metrics(confmat, self.clean_index)["iou"]  # any damage vs clean, as metrics.json `binary`
        if not np.isnan(damage):
            self.log("val/damage_IoU", damage)
        for name, iou in zip(self.class_names, metrics["iou"]):
            if not np.isnan(iou):  # absent from truth and prediction: undefined, not logged
                self.log(f"val/IoU/{name}", float(iou))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["heritage_seg"] = {"format": CHECKPOINT_FORMAT}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called by `load_from_checkpoint` before the weights are loaded. The loss holds no learned weights:
        checkpoints made before its class weights became non-persistent buffers carry `loss.ce.weight`."""
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(TRAINING_ONLY)
        }

    def configure_optimizers(self):
        return configure_optim(self.run_config.optim, self.parameters(), self.trainer.estimated_stepping_batches)
