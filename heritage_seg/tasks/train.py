"""What `python -m heritage_seg.train` does, as a function of its composed config (tests and benchmarks
call it directly). Train one fold:  python -m heritage_seg.train encoder=mit_b3 fold=1   (see conf/train.yaml)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from heritage_seg.core.cli import config_file, instantiate_or_user_error, override, shown_path
from heritage_seg.core.device import respect_cpu_allocation
from heritage_seg.data.folds import DEFAULT_SPLIT, check_fold
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.progressive import check as check_progressive
from heritage_seg.models.heads import checked_heads
from heritage_seg.runs.claim import claim_run_dir
from heritage_seg.runs.folder import CHECKPOINTS, CLASS_WEIGHTS, FINISHED, METRICS, SPLITS
from heritage_seg.runs.identity import RUN_IDENTITY
from heritage_seg.runs.records import ClassWeightsRecord, FinishedRecord, SplitsRecord, read_finished
from heritage_seg.training.build import build_training
from heritage_seg.training.trainer import build_trainer, checkpoint_to_resume, resume_setting
from heritage_seg.training.transfer import check_init_from

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    run_dir = Path(cfg.run_dir).resolve()
    labels = LabelMap.from_config(cfg.labels, config_file("labels"))
    # Cheap checks first: a typo must not wait for the data cache to be built.
    if cfg.get("split", DEFAULT_SPLIT) == "source":  # leave-one-group-out folds are checked against the groups
        check_fold(cfg.fold, cfg.n_folds)
    # the encoder group builds the Encoder, which checks the name before any data is loaded
    encoder = instantiate_or_user_error(cfg.encoder)
    check_progressive(cfg)  # data.progressive: its last stage and total are the run's data.image_size, max_epochs
    checked_heads(cfg.get("heads"), labels)  # heads=multitask needs groups in the label map
    writer = rank_zero_only.rank == 0  # under DDP every rank runs this function; only rank 0 writes files
    respect_cpu_allocation()
    resume = resume_setting(cfg)
    resume_from = checkpoint_to_resume(run_dir, cfg, RUN_IDENTITY)
    if resume and (finished := read_finished(run_dir)) is not None:
        # Lightning restores early-stopping counters but not `should_stop`: fitting again would train on.
        log.info(
            "resume=%s: %s already finished (%s); nothing to do, its results are left as they are",
            resume,
            run_dir,
            finished.reason,
        )
        return float(finished.best_score) if finished.best_score is not None else float("nan")
    check_init_from(cfg, resume=resume_from is not None)
    if writer and resume_from is None:
        # an interrupted attempt without any checkpoint may have left splits.json behind: auto may reuse the folder
        markers = (f"{CHECKPOINTS}/*.ckpt", METRICS) if resume == "auto" else (f"{CHECKPOINTS}/*.ckpt", SPLITS)
        claim_run_dir(run_dir, cfg, finished_markers=markers, reclaim=resume == "auto")
    L.seed_everything(cfg.seed, workers=True)
    # before the data: a tracker whose extra is missing fails in a second, not after the cache is built
    loggers = [instantiate_or_user_error(c) for c in (cfg.get("logger") or {}).values() if c is not None]

    datamodule, module, class_weight_record = build_training(cfg, labels, resume=resume_from is not None)
    if writer and resume_from is None:
        SplitsRecord.from_dict(datamodule.splits_record(encoder=encoder.name), strict=True).write(run_dir / SPLITS)
        ClassWeightsRecord.from_dict(class_weight_record, strict=True).write(run_dir / CLASS_WEIGHTS)

    trainer = build_trainer(cfg, loggers)
    if resume_from:
        log.info("resuming from %s (epoch, optimizer, scheduler, early stopping and checkpoint state)", resume_from)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)

    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_score if checkpoint is not None else None
    best_score = float(best) if best is not None else float("nan")
    if trainer.interrupted:  # e.g. SIGTERM handled by Lightning: the run is not finished, resume may continue it
        log.warning("training was interrupted at epoch %d; resume=true continues it", trainer.current_epoch)
        return best_score
    if writer:
        stopper = trainer.early_stopping_callback
        if stopper is not None and stopper.stopped_epoch > 0:
            reason = "early stopping"
        elif trainer.current_epoch >= trainer.max_epochs:  # after fit, current_epoch counts the completed epochs
            reason = "max_epochs reached"
        else:
            reason = "stopped before max_epochs (trainer.max_steps or max_time)"
        FinishedRecord(
            reason=reason,
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
            monitor=checkpoint.monitor if checkpoint is not None else None,
            best_score=None if best is None else best_score,
            best_checkpoint=checkpoint.best_model_path if checkpoint is not None else None,
        ).write(run_dir / FINISHED)
    log.info("run folder:      %s", run_dir)
    if checkpoint is not None:
        log.info("best checkpoint: %s", checkpoint.best_model_path)
        log.info("best %s: %.4f", checkpoint.monitor, best_score)
        if checkpoint.best_model_path:  # ready to paste, quoted where the path needs it (issue 25)
            best_ckpt = override("ckpt", shown_path(checkpoint.best_model_path))
            log.info("evaluate it:     python -m heritage_seg.evaluate %s tta=true", best_ckpt)
    return best_score


# conf/hydra/launcher/submitit_{local,slurm}.yaml carry the project's launcher defaults under the plugin's own
# names (so the documented `hydra/launcher=submitit_slurm` gets them); Hydra validates such a file against the
# plugin's schema of the same name and warns that this matching is deprecated. The configs hold only schema keys.
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
# The module's on_after_batch_transfer (device-side augmentation) is meant to be used with our datamodule.
warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer` in `LightningModule`")
