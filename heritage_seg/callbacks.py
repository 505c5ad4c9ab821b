"""Project callbacks (Lightning's own cover early stopping, checkpointing, LR logging and the progress bar)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning as L
import torch

from heritage_seg.scoring import metrics_payload, run_context, run_evaluation
from heritage_seg.files import write_json_atomic
from heritage_seg.rundir import METRICS, METRICS_TTA
from heritage_seg.tta import DEFAULT_TTA

log = logging.getLogger("heritage_seg")


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


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
    """When fit ends, evaluate the BEST checkpoint on the validation fold without and with TTA.

    Writes `metrics.json` and `metrics_tta.json` (the schema of `heritage_seg.evaluate`) into the run folder,
    so a sweep needs no second pass before `heritage_seg.aggregate`. Runs on rank 0 only, on a copy of the
    module, so the trained module itself is left as fit left it.
    """

    def __init__(self, output_dir: str, tta: bool = True):
        self.output_dir = Path(output_dir)
        self.tta = tta

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            log.warning("FinalValidationReport: no best checkpoint was saved; nothing evaluated")
            return
        model = copy.deepcopy(pl_module)
        model.load_state_dict(torch.load(best, map_location=pl_module.device, weights_only=False)["state_dict"])
        model.eval()
        labels_n, ignore = len(model.class_names), model.ignore_index
        runs = [(METRICS, ("identity",))] + ([(METRICS_TTA, DEFAULT_TTA)] if self.tta else [])
        for filename, transforms in runs:
            result = run_evaluation(model, trainer.datamodule.full_val_dataloader(), labels_n, ignore, transforms,
                                    pl_module.device, keep_predictions=False)
            payload = metrics_payload(result.confmat, model.class_names, tta=len(transforms) > 1,
                                      tta_transforms=list(transforms), num_images=len(result.indices),
                                      **run_context(model.hparams["run_config"], best, trainer.datamodule.split))
            write_json_atomic(self.output_dir / filename, payload)
            log.info("best checkpoint on the validation fold (tta=%s): mIoU over truth classes %.4f, strict "
                     "mIoU %.4f -> %s", len(transforms) > 1, _or_nan(payload["miou_gt"]), _or_nan(payload["miou"]),
                     self.output_dir / filename)
        del model
