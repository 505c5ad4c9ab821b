"""What the entry points and the benchmarks share to run a model: device and precision choice, and the
datamodule / LightningModule built from a composed config. Entry points import this, never each other."""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from heritage_seg.augment import BatchFlipRotate
from heritage_seg.data.folds import DEFAULT_SPLIT
from heritage_seg.data.labels import LabelMap
from heritage_seg.losses import build_loss
from heritage_seg.models import build_unet, normalisation
from heritage_seg.module import SegmentationModule

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str | int | None) -> str | int | None:
    """`auto`: bf16 autocast on GPUs that support it, fp16 + scaler on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def use_channels_last(cfg: DictConfig) -> bool:
    setting = cfg.get("perf", {}).get("channels_last", "auto")
    return torch.cuda.is_available() if setting == "auto" else bool(setting)


def build_datamodule(run_cfg: DictConfig, labels: LabelMap, data_cfg: DictConfig | None = None, augment=None):
    """The run's datamodule (its fold, n_folds, seed, split), prepared; `data_cfg` overrides the run's data
    section (evaluate with a moved data root)."""
    # partial: the LabelMap object must not pass through OmegaConf
    datamodule = instantiate(run_cfg.data if data_cfg is None else data_cfg, _partial_=True)(
        labels=labels, fold=run_cfg.fold, n_folds=run_cfg.n_folds, seed=run_cfg.seed, augment=augment,
        split=run_cfg.get("split", DEFAULT_SPLIT))
    datamodule.prepare_data()
    return datamodule


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
    )
    if cfg.get("perf", {}).get("compile"):
        module.model.compile()  # in place: state_dict keys (and so checkpoints) stay as without compile
    class_weight_record = {"classes": list(labels.names), **used}
    return datamodule, module, class_weight_record
