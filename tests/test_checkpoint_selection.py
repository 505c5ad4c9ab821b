"""best.ckpt and early stopping, as the default config wires them, must not prefer "predict nothing".

A scripted model replays what a real run on thin damage showed (issue: real data, cracks ~1 % of pixels): one
epoch predicts only Clean, a later one finds the cracks but also marks a few stray pixels as classes absent
from the validation set. The real module logs the metrics and the real callback configs pick the checkpoint.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from heritage_seg.training.module import SegmentationModule
from tests.conftest import compose_config

NUM_CLASSES, CRACKS, ABSENT = 16, 9, (5, 13, 14, 12)


def _image_and_mask(seed: int) -> dict[str, torch.Tensor]:
    """A 32 px mask of Clean with one 2-px crack; the image carries the truth so the scripted model can read it."""
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[4 + seed : 6 + seed, 2:30] = CRACKS
    image = mask.to(torch.uint8).unsqueeze(0).repeat(3, 1, 1)
    return {"image": image, "mask": mask, "index": torch.tensor(seed)}


class ScriptedModel(nn.Module):
    """Epoch 0 ("predict nothing"): Clean everywhere. Epoch 1: finds the crack left of column 24 and marks 8 stray
    pixels as each of four classes absent from the validation truth."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.epoch = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        truth = x[:, 0].round().long()
        pred = torch.zeros_like(truth)
        if self.epoch >= 1:
            pred[:, :, :24] = truth[:, :, :24]
            for k, cls in enumerate(ABSENT):
                pred[:, 20 + k, 0:8] = cls
        return nn.functional.one_hot(pred, NUM_CLASSES).permute(0, 3, 1, 2).float() * 10 + self.weight


class SetEpoch(L.Callback):
    def on_validation_epoch_start(self, trainer, pl_module):
        pl_module.model.epoch = trainer.current_epoch


def test_best_checkpoint_and_early_stopping_follow_the_thin_class_not_the_strict_mean(tmp_path, trains):
    cfg = compose_config(["data=sample", f"run_dir={tmp_path}", "optim.lr=0.0", "optim.scheduler=null"])
    batches = DataLoader([_image_and_mask(i) for i in range(4)], batch_size=2)
    module = SegmentationModule(
        OmegaConf.to_container(cfg, resolve=True), model=ScriptedModel(), loss=nn.CrossEntropyLoss()
    )
    module.pixel_mean.zero_()  # the scripted model reads the truth from the pixels as they are
    module.pixel_std.fill_(1.0)
    checkpoint = instantiate(cfg.callbacks.model_checkpoint)
    stopping = instantiate(cfg.callbacks.early_stopping)
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[checkpoint, stopping, SetEpoch()],
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=batches)

    metrics = trainer.callback_metrics
    assert float(metrics["val/mIoU"]) < 0.5, "epoch 1 must look worse on the strict mean (stray absent classes)"
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    assert best["epoch"] == 1, "best.ckpt must be the model that finds the cracks, not the one predicting only Clean"
    assert float(checkpoint.best_model_score) == pytest.approx(float(metrics["val/mIoU_gt"]))
    assert float(metrics["val/IoU/Cracks"]) == pytest.approx(22 / 28)  # columns 2..23 of the 2..29 crack found
    # any damage vs clean: 44 crack pixels found, 12 missed, 32 stray pixels of absent classes per image
    assert float(metrics["val/damage_IoU"]) == pytest.approx(44 / (44 + 12 + 32))
    assert stopping.wait_count == 0, "early stopping must count the epoch that found the cracks as an improvement"
