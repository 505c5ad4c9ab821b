"""Test-only callbacks, importable by Hydra through `+callbacks.<name>._target_=tests.helpers.<Class>`."""

from __future__ import annotations

import lightning as L
import torch


class SimulatedPreemption(RuntimeError):
    pass


class StopAfterEpoch(L.Callback):
    """Kills training like a preemption would, once `epochs` epochs (and their checkpoints) are done."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.epochs:
            raise SimulatedPreemption(f"simulated preemption after epoch {trainer.current_epoch}")


class PoisonWeightsAtEpoch(L.Callback):
    """Makes the model diverge at the start of epoch `epoch` (its first weight becomes NaN), as a far too high
    learning rate would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
