"""The datamodule and LightningModule a composed training config describes: train, lr_find and the benchmarks."""

from __future__ import annotations

import logging

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from heritage_seg.data.build import build_datamodule
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.heads import checked_heads, task_classes, task_to_fine
from heritage_seg.models.unet import build_unet, encoder_name
from heritage_seg.training.losses import build_loss
from heritage_seg.training.module import SegmentationModule
from heritage_seg.training.transfer import init_from

log = logging.getLogger(__name__)


def use_channels_last(cfg: DictConfig) -> bool:
    setting = cfg.get("perf", {}).get("channels_last", "auto")
    return torch.cuda.is_available() if setting == "auto" else bool(setting)


def _collapse_counts(counts, lookup) -> list[int]:
    return np.bincount(np.asarray(lookup), weights=np.asarray(counts, dtype=np.float64)).astype(np.int64).tolist()


def build_training(cfg: DictConfig, labels: LabelMap, resume: bool = False):
    """Datamodule (prepared, fold chosen), LightningModule and the class-weight record (class_weights.json) for
    `cfg`. The module builds its optimiser and batch augmentation itself from the resolved config, and would its
    network and loss too (as load_from_checkpoint has it do, from the same config and class-weight record); here
    the network is built before the data (a bad encoder fails before the cache) and the loss is the one whose
    class weights were just fitted, both handed in rather than built twice. The per-sample augmentation
    (conf/augment: `sample`) goes to the datamodule."""
    # the network first: a bad encoder name or unavailable weights fail before the data cache is built
    # (on resume the weights come from last.ckpt, so no pretrained download is needed)
    heads = checked_heads(cfg.get("heads"), labels)  # a label map without groups for heads=multitask: before data
    start = cfg.get("init_from")
    weights = None if resume or start else cfg.encoder.weights  # init_from brings its own encoder weights
    encoder = encoder_name(cfg.encoder)
    model = build_unet(encoder, weights, labels.num_classes, cfg.encoder.kwargs)
    if start and not resume:  # on resume the weights come from last.ckpt
        init_from(model, labels, encoder, start)
    sample_augment = OmegaConf.select(cfg, "augment.sample")
    datamodule = build_datamodule(cfg, labels, augment=instantiate(sample_augment) if sample_augment else None)
    datamodule.setup("fit")
    run_config = OmegaConf.to_container(cfg, resolve=True)
    counts = datamodule.train_class_pixel_counts()
    loss, record = build_loss(run_config["loss"], counts)
    if heads:  # each extra head's loss weights, fitted to the same pixels collapsed to its task
        record["heads"] = {
            task: {
                "classes": list(task_classes(labels, task)),
                **build_loss(run_config["heads"][task]["loss"], _collapse_counts(counts, task_to_fine(labels, task)))[
                    1
                ],
            }
            for task in heads
        }
    log.info(
        "class weights (%s, absent classes: %s): %s",
        record["strategy"],
        record["absent_class_weight"],
        ", ".join(f"{n}={w:.2f}" for n, w in zip(labels.names, record["weights"])),
    )
    module = SegmentationModule(
        run_config=run_config,
        protocol=datamodule.protocol().to_dict(),
        class_weights=record,
        channels_last=use_channels_last(cfg),
        model=model,
        loss=loss,
    )
    if cfg.get("perf", {}).get("compile"):
        module.model.compile()  # in place: state_dict keys (and so checkpoints) stay as without compile
    return datamodule, module, {"classes": list(labels.names), **record}
