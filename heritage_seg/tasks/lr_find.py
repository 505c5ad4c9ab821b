"""What `python -m heritage_seg.lr_find` does, as a function of its composed config (tests and benchmarks
call it directly). Learning-rate range test:  python -m heritage_seg.lr_find encoder=mit_b3 [any training override]

Runs Lightning's `Tuner.lr_find` on the training fold of the composed training config and writes the
loss-vs-LR plot (`lr_find.png`) and the suggestion (`lr_find.json`) into its run folder, then prints the
override to use. `optim.lr` sets AdamW's lr and OneCycle's max_lr together."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from heritage_seg.core.cli import config_file, instantiate_or_user_error
from heritage_seg.core.device import resolve_precision
from heritage_seg.core.files import write_json_atomic
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.heads import checked_heads
from heritage_seg.reporting.figures import save_figure
from heritage_seg.runs.claim import claim_run_dir
from heritage_seg.runs.folder import LR_FIND_JSON, LR_FIND_PNG
from heritage_seg.training.build import build_training
from heritage_seg.training.transfer import check_init_from

log = logging.getLogger(__name__)


def lr_find(cfg: DictConfig) -> float | None:
    run_dir = Path(cfg.run_dir).resolve()
    # the encoder group builds the Encoder, which checks the name before any data is loaded
    encoder = instantiate_or_user_error(cfg.encoder)
    labels = LabelMap.from_config(cfg.labels, config_file("labels"))
    checked_heads(cfg.get("heads"), labels)  # heads=multitask needs groups in the label map
    check_init_from(cfg, resume=False)
    claim_run_dir(run_dir, cfg, finished_markers=(LR_FIND_JSON,))
    L.seed_everything(cfg.seed, workers=True)
    datamodule, module, _ = build_training(cfg, labels)
    # enough epochs for num_training steps even on a tiny fold (each epoch has at least one step)
    epochs = max(int(cfg.trainer.max_epochs), int(cfg.lr_find.num_training))
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        max_epochs=epochs,
        precision=resolve_precision(cfg.trainer.precision),
        default_root_dir=str(run_dir),
    )
    search = cfg.lr_find
    finder = Tuner(trainer).lr_find(
        module,
        datamodule=datamodule,
        min_lr=search.min_lr,
        max_lr=search.max_lr,
        num_training=search.num_training,
        early_stop_threshold=search.early_stop_threshold,
        update_attr=False,
    )
    suggestion = finder.suggestion()
    save_figure(finder.plot(suggest=suggestion is not None), run_dir / LR_FIND_PNG)
    lrs, losses = list(finder.results["lr"]), list(finder.results["loss"])
    # A second, cruder reading of the same curve (fastai's rule): a tenth of the LR at the lowest smoothed loss.
    # The first 10 points are skipped, as Lightning's suggestion skips them (their smoothed loss is mostly noise).
    window = range(10, len(losses) - 1) if len(losses) > 12 else range(len(losses))
    min_loss_over_10 = float(lrs[min(window, key=losses.__getitem__)] / 10) if losses else None
    write_json_atomic(
        run_dir / LR_FIND_JSON,
        {
            "suggested_lr": suggestion,
            "suggestion_rule": "steepest descent of the smoothed loss (Lightning)",
            "lr_at_min_loss_over_10": min_loss_over_10,
            "encoder": encoder.name,
            "fold": cfg.fold,
            "image_size": cfg.data.image_size,
            "batch_size": cfg.data.batch_size,
            "lr": [float(x) for x in lrs],
            "loss": [float(x) for x in losses],
        },
    )
    if suggestion is None:
        log.warning("no suggestion: too few learning rates before the loss diverged; raise lr_find.num_training")
    else:
        log.info(
            "suggested learning rate %.3g -> train with:  optim.lr=%.3g   (check lr_find.png: on small, noisy "
            "data the steepest-descent point can sit in a flat stretch; a tenth of the LR at the lowest loss is "
            "%.3g)",
            suggestion,
            suggestion,
            min_loss_over_10,
        )
    log.info("plot and values: %s", run_dir)
    return suggestion
