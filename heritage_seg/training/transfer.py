"""`init_from=<checkpoint>`: start a training from a model trained on another collection, perhaps with another
label map. The encoder and decoder are taken whole; of the segmentation head (one output row per class), the rows
of classes with the same name in both label maps are kept and the others are left as freshly initialised.
Written by hand: Lightning's checkpoint loading and smp know nothing of label maps."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from heritage_seg.data.labels import LabelMap
from heritage_seg.models.stored import read_checkpoint
from heritage_seg.models.trained import load_model
from heritage_seg.models.unet import encoder_name

log = logging.getLogger(__name__)


def head_conv(model: nn.Module) -> nn.Conv2d:
    """The U-Net's class head: the convolution whose output channels are the classes."""
    return next(m for m in model.segmentation_head.modules() if isinstance(m, nn.Conv2d))


def check_init_from(cfg: DictConfig, resume: bool) -> None:
    """`init_from=` read and checked before a command claims its run folder: a refused model (pickled objects, not a
    heritage_seg checkpoint, a missing file) leaves no folder behind. On resume the weights come from last.ckpt."""
    if cfg.get("init_from") and not resume:
        read_checkpoint(cfg.init_from, "init_from")


def init_from(model: nn.Module, labels: LabelMap, encoder: str, checkpoint: str | Path) -> dict[str, list[str]]:
    """Copy a trained model's encoder, decoder and the head rows of shared class names into `model` (built for
    `encoder` and `labels`). Returns {"kept": [...], "fresh": [...]} class names, which the log lists too."""
    path = Path(checkpoint).expanduser()
    source = load_model(path, "init_from")  # names the file for a missing, foreign or broken checkpoint
    source_encoder = encoder_name(source.run_config.encoder)
    if source_encoder != encoder:
        raise ValueError(
            f"init_from={path}: trained with encoder {source_encoder}, but this run builds {encoder}; pass the "
            f"same encoder (encoder.name={source_encoder}) to start from it"
        )
    try:
        model.encoder.load_state_dict(source.model.encoder.state_dict())
        model.decoder.load_state_dict(source.model.decoder.state_dict())
    except RuntimeError as err:
        raise ValueError(
            f"init_from={path}: its encoder does not fit this run's ({str(err).strip().splitlines()[0]}); "
            "build it the same way (e.g. the same data.image_size for MaxViT)"
        ) from err
    target, origin = head_conv(model), head_conv(source.model)
    source_index = {name: i for i, name in enumerate(source.labels.names)}
    kept, fresh = [], []
    with torch.no_grad():
        for row, name in enumerate(labels.names):
            if name in source_index:
                target.weight[row].copy_(origin.weight[source_index[name]])
                if target.bias is not None and origin.bias is not None:
                    target.bias[row].copy_(origin.bias[source_index[name]])
                kept.append(name)
            else:
                fresh.append(name)
    log.info(
        "init_from %s: encoder and decoder taken; head rows kept for %d class(es) (%s), initialised afresh for %d (%s)",
        path,
        len(kept),
        ", ".join(kept) or "none",
        len(fresh),
        ", ".join(fresh) or "none",
    )
    return {"kept": kept, "fresh": fresh}
