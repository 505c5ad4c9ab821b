"""model_card.md: what someone who receives an exported model needs to use it well and to know its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.heads import head_weights
from heritage_seg.models.pretrained import started_from
from heritage_seg.reporting.templating import render
from heritage_seg.runs.folder import FINISHED, METRICS, METRICS_TTA, SPLITS
from heritage_seg.runs.records import FinishedRecord, MetricsRecord, R, SplitsRecord


def _read(record: type[R], path: Path) -> R | None:
    return record.read(path) if path.is_file() else None


def _metrics(run_dir: Path, labels: LabelMap) -> dict[str, Any] | None:
    plain, tta = _read(MetricsRecord, run_dir / METRICS), _read(MetricsRecord, run_dir / METRICS_TTA)
    if plain is None:
        return None
    empty = {"iou": None, "gt_pixels": 0}
    return {
        "plain": plain,
        "where": "at each annotation's own resolution" if plain.resolution == "native" else "at the model's input size",
        "variants": [(name, p) for name, p in (("without TTA", plain), ("with TTA (flips, rot90)", tta)) if p],
        "per_class": [(name, {**empty, **plain.per_class.get(name, {})}) for name in labels.names],
    }


def model_card(
    run_cfg: DictConfig,
    labels: LabelMap,
    protocol: Protocol,
    ckpt: Path,
    run_dir: Path,
    export: dict[str, Any],
    temperature: float = 1.0,
) -> str:
    """The card's text (templates/model_card.md.j2) for a run folder's checkpoint and its export: `export` is
    {"format": "onnx", "file", "graph", "check"} or {"format": "safetensors", "folder", "splits", "ckpt",
    "init_from"} (the last two: the folder as the options that take it, ready to paste)."""
    finished = _read(FinishedRecord, run_dir / FINISHED)
    return render(
        "model_card.md.j2",
        encoder={"family": None, "weights": None, **OmegaConf.to_container(run_cfg.encoder, resolve=True)},
        started_from=started_from(OmegaConf.to_container(run_cfg, resolve=True)),
        ckpt=ckpt,
        export=export,
        temperature=temperature,
        protocol=protocol,
        data_root=run_cfg.data.root,
        splits=_read(SplitsRecord, run_dir / SPLITS),
        fold=run_cfg.fold,
        n_folds=run_cfg.n_folds,
        split=run_cfg.get("split", "source"),
        seed=run_cfg.seed,
        loss={k: run_cfg.loss.get(k) for k in ("dice_weight", "focal_weight", "gamma", "ce_weight", "class_weighting")},
        optimiser=str(OmegaConf.select(run_cfg, "optim.optimizer._target_")).rsplit(".", 1)[-1],
        extra_heads=head_weights(run_cfg.get("heads")),
        finished=finished,
        classes=[
            {"name": name, "color": "#{:02X}{:02X}{:02X}".format(*color), "raw": raw}
            for name, color, raw in zip(labels.names, labels.colors, labels.raw_values)
        ],
        ignore_index=labels.ignore_index,
        metrics=_metrics(run_dir, labels),
    )
