"""The datamodule and LightningModule a composed training config describes: train, lr_find and the benchmarks."""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from heritage_seg.data.augment import BatchFlipRotate
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.unet import build_unet, normalisation
from heritage_seg.runs.rebuild import build_datamodule
from heritage_seg.training.losses import build_loss
from heritage_seg.training.module import SegmentationModule

log = logging.getLogger(__name__)


def use_channels_last(cfg: DictConfig) -> bool:
    setting = cfg.get("perf", {}).get("channels_last", "auto")
    return torch.cuda.is_available() if setting == "auto" else bool(setting)


def build_training(cfg: DictConfig, labels: LabelMap, resume: bool = False):
    """Datamodule (prepared, fold chosen) and LightningModule for `cfg`: train, lr_find and the benchmarks."""
    # On resume the weights come from last.ckpt, so no pretrained download is needed.
    model = build_unet(cfg.encoder.name, None if resume else cfg.encoder.weights, labels.num_classes,
                       cfg.encoder.kwargs)
    augment = instantiate(cfg.augment) if cfg.get("augment") else None
    on_device = isinstance(augment, BatchFlipRotate)  # batch-level on the device, else per sample in the loader
    datamodule = build_datamodule(cfg, labels, augment=None if on_device else augment)
    datamodule.setup("fit")

    loss, used = build_loss(OmegaConf.to_container(cfg.loss, resolve=True), datamodule.train_class_pixel_counts())
    log.info("class weights (%s, absent classes: %s): %s", used["strategy"], used["absent_class_weight"],
             ", ".join(f"{n}={w:.2f}" for n, w in zip(labels.names, used["weights"])))
    mean, std = normalisation(cfg.encoder.name)
    module = SegmentationModule(
        model=model,
        loss=loss,
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        class_names=labels.names,
        ignore_index=labels.ignore_index,
        mean=mean,
        std=std,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        batch_augment=augment if on_device else None,
        channels_last=use_channels_last(cfg),
        protocol=datamodule.protocol(),
    )
    if cfg.get("perf", {}).get("compile"):
        module.model.compile()  # in place: state_dict keys (and so checkpoints) stay as without compile
    class_weight_record = {"classes": list(labels.names), **used}
    return datamodule, module, class_weight_record
