"""The optimiser and learning-rate schedule a config's `optim` group names (conf/optim/): one home for training
and pre-training."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from hydra.utils import instantiate


def configure_optim(optim: Any, parameters: Iterable[torch.nn.Parameter], total_steps: int) -> Any:
    """What LightningModule.configure_optimizers returns: the optimiser, and its scheduler stepped every batch
    over `total_steps` (the Trainer's estimate) when the group has one."""
    optimizer = instantiate(optim.optimizer)(parameters)
    if optim.get("scheduler") is None:
        return optimizer
    scheduler = instantiate(optim.scheduler)(optimizer, total_steps=int(total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
