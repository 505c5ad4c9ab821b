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


class SlowEpochs(L.Callback):
    """Stretches every training epoch after the first by `seconds` in a SLURM job's first attempt
    (SLURM_RESTART_COUNT unset or 0), so that it outlives a short time limit with its first checkpoint saved
    early; the requeued attempt runs at full speed."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import os
        import time

        if trainer.current_epoch > 0 and os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
            time.sleep(self.seconds)


class RecordLearningRate(L.Callback):
    """Appends {epoch, global_step, lr, attempt} at the start of every training epoch to a JSON-lines file, which
    survives requeues: a resumed run's schedule can be compared with an uninterrupted one's."""

    def __init__(self, path: str):
        self.path = path

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import json
        import os

        if trainer.is_global_zero:
            record = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                      "lr": trainer.optimizers[0].param_groups[0]["lr"],
                      "attempt": os.environ.get("SLURM_RESTART_COUNT", "0")}
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
