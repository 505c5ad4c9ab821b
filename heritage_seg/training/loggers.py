"""Experiment trackers beside TensorBoard and CSV (conf/logger/): Lightning's MLflow and W&B loggers, built only
when chosen, with a message naming the extra that installs them when it is missing."""

from __future__ import annotations

import os
from typing import Any

from heritage_seg.core.errors import require_extra


def mlflow_logger(**kwargs: Any):
    """Lightning's MLFlowLogger. MLflow 3 refuses its local file store (./mlruns) unless asked for it
    (MLFLOW_ALLOW_FILE_STORE): that store is what works offline with no database and with many SLURM jobs
    writing at once, so it is asked for here when the tracking URI is a file store."""
    require_extra("mlflow", "mlflow", "logger=mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    if str(kwargs.get("tracking_uri") or "").startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(**kwargs)


def wandb_logger(**kwargs: Any):
    """Lightning's WandbLogger (offline by default: `wandb sync` uploads later)."""
    require_extra("wandb", "wandb", "logger=wandb")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(**kwargs)
