"""Project callbacks (Lightning's own cover early stopping, checkpointing, LR logging and the progress bar)."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import lightning as L
import torch

from heritage_seg.core.device import describe_device
from heritage_seg.evaluation.native import check_resolution, validation_masks
from heritage_seg.evaluation.scoring import evaluation_payload, run_evaluation
from heritage_seg.inference.sliding import protocol_probabilities
from heritage_seg.inference.tta import DEFAULT_TTA
from heritage_seg.runs.folder import METRICS, METRICS_TTA
from heritage_seg.runs.records import MetricsRecord

log = logging.getLogger("heritage_seg")


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


class FreezeEncoder(L.Callback):
    """The U-Net's encoder does not learn in the first `epochs` epochs (fine-tuning from `init_from`: the new
    head and the decoder settle before the encoder moves). Its parameters stay in the optimiser with no gradient
    (AdamW skips them; the one-cycle schedule keeps its groups) and its BatchNorm statistics are kept (eval
    mode). Written by hand: Lightning's BaseFinetuning adds parameter groups on unfreezing, which a one-cycle
    schedule laid out for fixed groups does not take."""

    def __init__(self, epochs: int = 0):
        self.epochs = int(epochs or 0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs <= 0:
            return
        frozen = trainer.current_epoch < self.epochs
        encoder = pl_module.model.encoder
        for parameter in encoder.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            encoder.eval()  # Lightning put the whole module in train mode just before this hook
        if trainer.current_epoch in (0, self.epochs):
            log.info("encoder %s at epoch %d", "frozen" if frozen else "unfrozen", trainer.current_epoch)


class EpochSummary(L.Callback):
    """One log line per validation epoch, so a sweep's log files (no progress bar there) show how a run went."""

    def __init__(self, keys: tuple[str, ...] = ("val/loss", "val/mIoU_gt", "val/mIoU")):
        self.keys = keys

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run before the module's hook there, so val/mIoU would be stale
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{k}={float(metrics[k]):.4f}" for k in self.keys if k in metrics)
        log.info("epoch %d/%d  %s", trainer.current_epoch + 1, trainer.max_epochs, shown)


class FinalValidationReport(L.Callback):
    """When training ends, evaluate the BEST checkpoint on the validation fold without and with TTA.

    Writes `metrics.json` and `metrics_tta.json` (the schema of `heritage_seg.evaluate`) into the run folder,
    so a sweep needs no second pass before `heritage_seg.aggregate`. Runs on rank 0 only, on a copy of the
    module, so the trained module itself is left as fit left it.

    It runs in `on_train_end`, not `on_fit_end`: Lightning 2.6 tears the strategy down (which moves the module to
    the CPU) BEFORE `on_fit_end`, so an evaluation there would silently run on the CPU in fp32 after a GPU run.
    Here the module is still on the training device, and the evaluation runs under the training precision's
    autocast (the precision plugin's forward context); metrics.json records both.
    """

    def __init__(self, output_dir: str, tta: bool = True, resolution: str = "native", max_side: int | None = None):
        self.output_dir = Path(output_dir)
        self.tta = tta
        self.native = check_resolution(resolution, max_side)
        self.max_side = max_side

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            log.warning("FinalValidationReport: no best checkpoint was saved; nothing evaluated")
            return
        trainer.strategy.checkpoint_io.teardown()  # waits for checkpoints still being written in the background
        device = trainer.strategy.root_device
        model = copy.deepcopy(pl_module).to(device)
        model.load_state_dict(torch.load(best, map_location=device, weights_only=True)["state_dict"])
        model.eval()
        precision = trainer.precision_plugin

        def logits(images: torch.Tensor) -> torch.Tensor:
            with precision.forward_context():  # bf16/fp16 autocast as in training, nothing for 32-true
                return model(images)

        labels_n, ignore = len(model.class_names), model.ignore_index
        datamodule = trainer.datamodule
        native = validation_masks(datamodule, self.max_side) if self.native else None
        runs = [(METRICS, ("identity",))] + ([(METRICS_TTA, DEFAULT_TTA)] if self.tta else [])
        for filename, transforms in runs:
            start = time.perf_counter()
            result = run_evaluation(
                logits,
                datamodule.full_val_dataloader(),
                labels_n,
                ignore,
                transforms,
                device,
                keep_predictions=False,
                native_mask=native,
                probabilities=protocol_probabilities(model.protocol),
            )
            seconds = round(time.perf_counter() - start, 3)
            context = {
                "max_side": self.max_side,
                "device": describe_device(device),
                "seconds": seconds,
                "precision": str(trainer.precision),
            }  # the training precision's autocast, as used here
            payload = evaluation_payload(
                result, model.labels, transforms, model.hparams["run_config"], best, datamodule.split, **context
            )
            MetricsRecord.from_dict(payload, strict=True).write(self.output_dir / filename)
            log.info(
                "best checkpoint on the validation fold (tta=%s, %s, %s, %.1f s, %s resolution): mIoU over "
                "truth classes %.4f, strict mIoU %.4f -> %s",
                len(transforms) > 1,
                payload["device"],
                payload["precision"],
                seconds,
                payload["resolution"],
                _or_nan(payload["miou_gt"]),
                _or_nan(payload["miou"]),
                self.output_dir / filename,
            )
