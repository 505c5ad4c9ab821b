"""What train and pretrain share around Lightning's Trainer: continuing an interrupted run, checkpoint IO."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.configs import first_difference
from heritage_seg.core.device import resolve_precision
from heritage_seg.models.stored import read_checkpoint
from heritage_seg.models.unet import encoder_name
from heritage_seg.runs.checkpoints import LocalAtomicCheckpointIO
from heritage_seg.runs.folder import LAST


def resume_setting(cfg: DictConfig) -> bool | str:
    """The `resume` option, checked: false, true or auto."""
    resume = cfg.get("resume", False)
    if resume not in (True, False, "auto"):
        raise ValueError(f"resume={resume}: choose false, true or auto")
    return resume


def checkpoint_to_resume(run_dir: Path, cfg: DictConfig, identity: Sequence[str]) -> Path | None:
    """The last.ckpt this command continues from, or None for a fresh start: resume=true needs one (checked by
    `resume_checkpoint`); auto (what a requeued sweep job gets) continues if the folder has one, else starts in it
    afresh."""
    resume = resume_setting(cfg)
    if resume is True or (resume == "auto" and (run_dir / LAST).is_file()):
        return resume_checkpoint(run_dir, cfg, identity)
    return None


def resume_checkpoint(run_dir: Path, cfg: DictConfig, identity: Sequence[str]) -> Path:
    """`resume=true`: the run folder's last.ckpt, after checking it belongs to the run this command describes
    (the `identity` keys of the config it was made with agree with this command's)."""
    last = run_dir / LAST
    if not last.is_file():
        raise FileNotFoundError(
            f"resume=true: {last} does not exist; pass hydra.run.dir=<folder of the interrupted run> "
            "(or drop resume=true to start a new run)"
        )
    saved = OmegaConf.create(read_checkpoint(last, "resume")["hyper_parameters"]["run_config"])
    difference = None
    if "encoder.name" in identity:  # by the network it builds: an earlier version recorded timm's tu- route
        was, now = encoder_name(saved.encoder), encoder_name(cfg.encoder)
        difference = ("encoder.name", was, now) if was != now else None
    difference = difference or first_difference(saved, cfg, [k for k in identity if k != "encoder.name"])
    if difference:
        key, was, now = difference
        raise ValueError(f"resume=true: {run_dir} was trained with {key}={was}, this command says {key}={now}")
    return last


def trainer_plugins(cfg: DictConfig) -> list:
    """Checkpoints written in the background (Lightning's AsyncCheckpointIO: the state is copied on the training
    thread, then saved by LocalAtomicCheckpointIO in a worker thread while training goes on; torch.save releases
    the GIL while it writes), so an epoch does not wait for its last.ckpt; Lightning's teardown waits for them, and
    FinalValidationReport before it reads best.ckpt. On SLURM, submitit owns requeueing (max_num_timeout):
    Lightning's own SIGUSR1 requeue would fight it. A `trainer.plugins` of the user's replaces both."""
    if "plugins" in cfg.trainer:
        return []
    plugins: list = [AsyncCheckpointIO(LocalAtomicCheckpointIO())]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=bool(cfg.get("slurm_auto_requeue", False))))
    return plugins


def build_trainer(cfg: DictConfig, loggers: list) -> L.Trainer:
    """The Trainer a run config describes: its `trainer` group, its `callbacks`, the loggers, the precision that
    `auto` resolves to on this machine, and the checkpoint IO of `trainer_plugins`."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    extra = {"plugins": plugins} if (plugins := trainer_plugins(cfg)) else {}
    if cfg.data.get("progressive"):  # the training loader of each epoch's stage (data/progressive.py)
        extra["reload_dataloaders_every_n_epochs"] = 1
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        precision=resolve_precision(cfg.trainer.precision),
        **extra,
    )
