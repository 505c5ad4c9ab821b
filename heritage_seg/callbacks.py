"""Project callbacks (Lightning's own cover early stopping, checkpointing, LR logging and the progress bar)."""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger("heritage_seg")


class EpochSummary(L.Callback):
    """One log line per validation epoch, so a sweep's log files (no progress bar there) show how a run went."""

    def __init__(self, keys: tuple[str, ...] = ("train/loss_epoch", "val/loss", "val/mIoU")):
        self.keys = keys

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{k}={float(metrics[k]):.4f}" for k in self.keys if k in metrics)
        log.info("epoch %d/%d  %s", trainer.current_epoch + 1, trainer.max_epochs, shown)
