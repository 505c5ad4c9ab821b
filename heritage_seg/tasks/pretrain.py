"""What `python -m heritage_seg.pretrain` does, as a function of its composed config (tests and benchmarks call it
directly). Self-supervised pre-training on images alone (see conf/pretrain.yaml and training/pretext.py)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from heritage_seg.core.cli import config_file, instantiate_or_user_error, override, shown_path
from heritage_seg.core.device import respect_cpu_allocation
from heritage_seg.data.build import build_datamodule
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.readers import DEFAULT_SOURCE_PATTERN
from heritage_seg.data.unlabelled import UnlabelledDataModule
from heritage_seg.models.pretrained import save_pretrained
from heritage_seg.models.unet import build_unet
from heritage_seg.runs.claim import claim_run_dir
from heritage_seg.runs.folder import CHECKPOINTS, PRETRAIN_RECORD, PRETRAINED
from heritage_seg.runs.records import PretrainRecord
from heritage_seg.training.build import use_channels_last
from heritage_seg.training.pretext import MaskedImageModule
from heritage_seg.training.trainer import build_trainer, checkpoint_to_resume, resume_setting

log = logging.getLogger(__name__)

METHOD = "masked image modelling through the U-Net (SimMIM-style: hidden patches set to the mean, L1 on them)"
# what must agree between an interrupted pre-training and the command that resumes it
PRETRAIN_IDENTITY = (
    "encoder.name",
    "data.image_size",
    "trainer.max_epochs",
    "pretrain.mask_patch",
    "pretrain.mask_ratio",
    "seed",
)


def _encoder_option(cfg: DictConfig) -> str:
    """How the user chose the encoder: its config (encoder=convnext), or its name where it was set by hand."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().runtime.choices.get("encoder") is None:
        return f"encoder.name={cfg.encoder.name}"
    hydra = HydraConfig.get()
    named = any(o.startswith("encoder.name=") for o in hydra.overrides.task)
    return f"encoder={hydra.runtime.choices.encoder}" + (f" encoder.name={cfg.encoder.name}" if named else "")


def validation_fold_ids(cfg: DictConfig) -> list[str]:
    """The image ids (with their _augN copies) that training's fold `pretrain.exclude_fold` validates on."""
    with open_dict(cfg):
        fold_cfg = OmegaConf.merge(cfg, {"fold": int(cfg.pretrain.exclude_fold)})
    datamodule = build_datamodule(fold_cfg, LabelMap.from_config(cfg.labels, config_file("labels")))
    datamodule.setup("fit")
    record = datamodule.splits_record()
    return list(record["val_ids"])


def pretrain(cfg: DictConfig) -> Path | None:
    """Pre-train and write `pretrained.pt` and `pretrained.json` into the run folder; returns the weights file
    (None when interrupted: resume=true continues)."""
    run_dir = Path(cfg.run_dir).resolve()
    encoder = instantiate_or_user_error(cfg.encoder).name  # checks the name before any data is read
    writer = rank_zero_only.rank == 0
    respect_cpu_allocation()
    resume = resume_setting(cfg)
    if resume and (run_dir / PRETRAIN_RECORD).is_file():
        log.info("resume=%s: %s already finished; its %s is left as it is", resume, run_dir, PRETRAINED)
        return run_dir / PRETRAINED
    resume_from = checkpoint_to_resume(run_dir, cfg, PRETRAIN_IDENTITY)
    if writer and resume_from is None:
        claim_run_dir(run_dir, cfg, finished_markers=(f"{CHECKPOINTS}/*.ckpt", PRETRAINED), reclaim=resume == "auto")
    L.seed_everything(cfg.seed, workers=True)
    loggers = [instantiate_or_user_error(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    # the network first: a bad encoder or unavailable weights fail before the images are read
    model = build_unet(encoder, None if resume_from else cfg.encoder.weights, 3, cfg.encoder.kwargs)

    exclude = validation_fold_ids(cfg) if cfg.pretrain.exclude_fold is not None else []
    data = cfg.data
    datamodule = UnlabelledDataModule(
        data.root,
        int(data.image_size),
        int(data.batch_size),
        val_images=int(cfg.pretrain.val_images),
        num_workers=int(data.get("num_workers", 0)),
        seed=int(cfg.seed),
        exclude_augmented=bool(cfg.pretrain.exclude_augmented),
        exclude_ids=exclude,
        source_pattern=data.get("source_id_pattern") or DEFAULT_SOURCE_PATTERN,
    )
    datamodule.setup("fit")
    if exclude:
        log.info("left out the %d images of fine-tuning fold %s", len(exclude), cfg.pretrain.exclude_fold)

    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = MaskedImageModule(run_config, channels_last=use_channels_last(cfg), model=model)
    if cfg.get("perf", {}).get("compile"):
        module.model.compile()
    trainer = build_trainer(cfg, loggers)
    if resume_from:
        log.info("resuming from %s", resume_from)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    if trainer.interrupted:
        log.warning("pre-training was interrupted at epoch %d; resume=true continues it", trainer.current_epoch)
        return None
    if not writer:
        return run_dir / PRETRAINED

    def final(key: str) -> float | None:
        value = trainer.callback_metrics.get(key)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    weights = run_dir / PRETRAINED
    save_pretrained(weights, module.model, encoder, cfg.encoder.kwargs)
    PretrainRecord(
        method=METHOD,
        encoder=encoder,
        started_from=None if cfg.encoder.weights in (None, "null", "none") else str(cfg.encoder.weights),
        data_root=str(Path(data.root).expanduser().resolve()),
        image_size=int(data.image_size),
        num_images=datamodule.num_train,
        num_val_images=datamodule.num_val,
        left_out=datamodule.left_out,
        skipped=datamodule.skipped,
        mask_patch=module.mask_patch,
        mask_ratio=module.mask_ratio,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        final_train_loss=final("train/loss_epoch"),
        final_val_loss=final("val/loss"),
        seconds=round(time.perf_counter() - started, 1),
    ).write(run_dir / PRETRAIN_RECORD)
    log.info("pre-trained weights: %s", weights)
    log.info(
        "train from them:     python -m heritage_seg.train %s %s",
        _encoder_option(cfg),
        override("encoder.weights", shown_path(weights)),
    )
    return weights
