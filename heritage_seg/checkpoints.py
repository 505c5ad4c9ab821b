"""Checkpoint files: written fast and atomically while training; a trained model, its label map and its run
config rebuilt from one alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch import nn

from heritage_seg.data.labels import LabelMap
from heritage_seg.files import write_file_atomic
from heritage_seg.models import build_unet, normalisation
from heritage_seg.module import CHECKPOINT_FORMAT, SegmentationModule


class LocalAtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, but a local checkpoint is saved straight into a temporary file beside it
    and renamed over it (heritage_seg.files): as atomic as Lightning's own `_atomic_save`, which serialises the
    whole checkpoint into an in-memory buffer first and then writes that buffer through fsspec — a second copy of
    a 370-540 MB checkpoint in RAM, and 2.5-5x slower on the machines measured (benchmarks/RESULTS.md, "GPU
    path"), paid after every epoch. Other file systems (s3://, ...) keep Lightning's way."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_file_atomic(Path(path), lambda tmp: torch.save(checkpoint, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt={path}: file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"ckpt={path}: not a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt={path}: not a Lightning checkpoint (no state_dict)")
    fmt = (checkpoint.get("heritage_seg") or {}).get("format")
    run_config = (checkpoint.get("hyper_parameters") or {}).get("run_config")
    if fmt != CHECKPOINT_FORMAT or run_config is None:
        raise ValueError(
            f"ckpt={path}: not a heritage_seg checkpoint of a compatible version (format {fmt}, this version reads "
            f"{CHECKPOINT_FORMAT}); evaluate it with the heritage_seg version that trained it"
        )
    return checkpoint


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
