"""model_card.md: what someone who receives an exported model needs to use it well and to know its limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.labels import LabelMap
from heritage_seg.runs.folder import FINISHED, METRICS, METRICS_TTA, SPLITS


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _metrics_section(run_dir: Path, labels: LabelMap) -> list[str]:
    plain, tta = _read(run_dir / METRICS), _read(run_dir / METRICS_TTA)
    if plain is None:
        return [
            "No metrics.json in the run folder: evaluate the checkpoint (`python -m heritage_seg.evaluate "
            "ckpt=…`) before relying on this model.",
            "",
        ]
    where = (
        "at each annotation's own resolution" if plain.get("resolution") == "native" else "at the model's input size"
    )
    lines = [
        f"Validation fold {plain.get('fold')} of {plain.get('n_folds')} ({plain.get('num_images')} images), "
        f"dataset-level, {where}; the model never saw these images in training.",
        "",
        "| | mIoU (truth classes) | mIoU (strict) | pixel accuracy | mean Dice |",
        "|---|---|---|---|---|",
    ]
    for name, payload in (("without TTA", plain), ("with TTA (flips, rot90)", tta)):
        if payload is not None:
            lines.append(
                f"| {name} | {_pct(payload.get('miou_gt'))} | {_pct(payload.get('miou'))} | "
                f"{_pct(payload.get('pixel_accuracy'))} | {_pct(payload.get('mean_dice'))} |"
            )
    lines += [
        "",
        "Per class (without TTA), IoU in %; – : the class was in neither truth nor prediction:",
        "",
        "| class | IoU | truth pixels |",
        "|---|---|---|",
    ]
    for name in labels.names:
        row = plain["per_class"].get(name, {})
        lines.append(f"| {name} | {_pct(row.get('iou'))} | {row.get('gt_pixels', 0):,} |")
    return lines + [""]


def model_card(
    run_cfg: DictConfig,
    labels: LabelMap,
    protocol: Protocol,
    ckpt: Path,
    run_dir: Path,
    onnx_file: str,
    graph: dict[str, Any],
    check: dict[str, Any],
) -> str:
    data, encoder, loss = run_cfg.data, run_cfg.encoder, run_cfg.loss
    splits, finished = _read(run_dir / SPLITS), _read(run_dir / FINISHED)
    lines = [
        f"# Model card: heritage_seg U-Net, {encoder.name} ({encoder.get('family')})",
        "",
        f"Exported from `{ckpt}` to `{onnx_file}` (ONNX opset {graph['opset']}).",
        "",
        "## Use",
        "",
        f"- Input: {graph['input']}; the encoder's normalisation is inside the graph.",
        f"- Output: {graph['output']}.",
        f"- Batch size: dynamic. Spatial size: {graph['spatial_size']}.",
        f"- Geometry ({protocol.resize}): {protocol.describe()}",
        "- Not inside the graph: sliding windows over large scans, test-time augmentation, the damage report.",
        "",
        "## Check against PyTorch (onnxruntime, CPU)",
        "",
        f"{check['images']} validation crops ({check['pixels']:,} pixels, shapes {check['shapes']}): largest absolute "
        f"logit difference {check['max_abs_logit_difference']:.2e}, argmax agreement "
        f"{100 * check['argmax_agreement']:.3f} % (onnxruntime {check['onnxruntime']}).",
        "",
        "## Training",
        "",
        f"- Data: `{data.root}`"
        + (f", {len(splits['train_ids'])} training / {len(splits['val_ids'])} validation images" if splits else "")
        + ".",
        f"- Fold {run_cfg.fold} of {run_cfg.n_folds} (split by {run_cfg.get('split', 'source')}: no source image in "
        f"both), seed {run_cfg.seed}.",
        f"- Loss: Dice x {loss.get('dice_weight')} + Focal x {loss.get('focal_weight')} (gamma {loss.get('gamma')}) + "
        f"cross-entropy x {loss.get('ce_weight')}, class weighting {loss.get('class_weighting')}; optimiser "
        f"{str(OmegaConf.select(run_cfg, 'optim.optimizer._target_')).rsplit('.', 1)[-1]}, "
        f"{finished['epochs'] if finished else '?'} epochs"
        + (
            f" ({finished['reason']}), best {finished['monitor']} {finished['best_score']:.4f}"
            if finished and finished.get("best_score") is not None
            else ""
        )
        + ".",
        f"- Encoder weights at the start: {encoder.get('weights')}.",
        "",
        "## Label map",
        "",
        "| class id | class | colour | raw mask value |",
        "|---|---|---|---|",
    ]
    for class_id, (name, color, raw) in enumerate(zip(labels.names, labels.colors, labels.raw_values)):
        hex_color = "#{:02X}{:02X}{:02X}".format(*color)
        lines.append(f"| {class_id} | {name} | {hex_color} | {raw} |")
    lines += [
        "",
        f"Ignored (not annotated) mask value: {labels.ignore_index}. The model has no background class.",
        "",
        "## Validation metrics",
        "",
    ]
    lines += _metrics_section(run_dir, labels)
    lines += [
        "## Intended use and limits",
        "",
        "- Intended: mapping and measuring visible damage on photographs and scans of cultural-heritage objects, as "
        "an aid to a conservator's survey, and research comparing segmentation models.",
        "- Not a condition assessment: every map needs review by a conservator. It does not see damage that is not "
        "visible in RGB (structural, chemical, under the surface).",
        "- Damage classes that were rare or absent in the training data (see the per-class table) are found poorly "
        "or not at all; thin damage (cracks, hair, scratches) is found only down to the pixel density the model "
        "was trained at.",
        "- Objects, materials, lighting or capture devices unlike the training data lower accuracy without warning.",
        "- Every pixel is classed as some object class: crop mounts, frames and background before mapping.",
        "- One cross-validation fold: the spread across folds (heritage_seg.aggregate) says how much these figures "
        "vary with the data.",
        "",
    ]
    return "\n".join(lines)
