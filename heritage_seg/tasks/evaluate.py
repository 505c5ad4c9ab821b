"""What `python -m heritage_seg.evaluate` does, as a function of its composed config (tests and benchmarks
call it directly). Evaluate a checkpoint:  python -m heritage_seg.evaluate ckpt=outputs/…/checkpoints/best.ckpt tta=true

Rebuilds the model and the validation fold of the run that made the checkpoint, evaluates it at dataset
level, and writes metrics.json, the pictures and the prediction masks into its own run folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from heritage_seg.core.device import (
    describe_device,
    recorded_precision,
)
from heritage_seg.core.files import save_image
from heritage_seg.evaluation.calibration import fit_temperature, sample_pixels
from heritage_seg.evaluation.native import check_resolution, validation_masks
from heritage_seg.evaluation.scoring import (
    EvalResult,
    evaluation_payload,
    format_table,
    run_evaluation,
)
from heritage_seg.inference.segmenter import Segmenter
from heritage_seg.inference.sliding import protocol_probabilities
from heritage_seg.models.unet import encoder_name
from heritage_seg.reporting.figures import (
    overlay_figure,
    palette_mask,
    plot_class_distribution,
    plot_confusion_matrix,
    plot_iou_per_class,
    plot_reliability,
)
from heritage_seg.reporting.viewer import scored_content, write_viewer
from heritage_seg.runs.checkpoints import write_with_temperature
from heritage_seg.runs.claim import claim_run_dir
from heritage_seg.runs.folder import (
    CALIBRATED_CKPT,
    CLASS_DISTRIBUTION_PNG,
    CONFUSION_MATRIX_PNG,
    IOU_PER_CLASS_PNG,
    METRICS,
    PANEL_FILES,
    PREDICTED_MASKS,
    PREDICTED_UNCERTAINTY,
    PREDICTIONS,
    RELIABILITY_PNG,
    VIEWER_SUFFIX,
)
from heritage_seg.runs.identity import SAME_VALIDATION_SET
from heritage_seg.runs.rebuild import check_against_splits, rebuild_validation_data
from heritage_seg.runs.records import MetricsRecord

log = logging.getLogger(__name__)
CALIBRATION_PIXELS = 5000  # per validation image, for fitting the temperature (a few MB for a whole fold)


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    # bad checkpoints, device and precision options fail before any folder is touched
    segmenter = Segmenter.load(
        cfg.ckpt,
        cfg.device,
        bool(cfg.tta),
        cfg.precision,
        SAME_VALIDATION_SET,
        "an ensemble needs checkpoints of the same validation set",
    )
    members, ckpts = segmenter.members, [Path(c) for c in segmenter.sources]
    module = members[0]
    run_cfg, labels = module.run_config, module.labels
    native = check_resolution(cfg.resolution, cfg.max_side)
    claim_run_dir(out_dir, cfg, finished_markers=(METRICS,))
    transforms, device, precision = segmenter.transforms, segmenter.device, segmenter.precision
    ckpt = ckpts[0]
    datamodule = rebuild_validation_data(run_cfg, labels, ckpt, cfg.data.root, cfg.data.batch_size, cfg.data.cache_dir)
    for other in ckpts[1:]:  # each member's own record of its validation fold must agree too
        check_against_splits(other, datamodule)

    ids = datamodule.data.ids

    def save_native(index: int, prediction: np.ndarray, uncertainty: np.ndarray | None) -> None:
        save_image(out_dir / PREDICTED_MASKS / f"{ids[index]}.png", prediction)  # what metrics.json counted
        if uncertainty is not None:
            save_image(out_dir / PREDICTED_UNCERTAINTY / f"{ids[index]}.png", uncertainty)

    models = segmenter.logits

    def score(**extra) -> EvalResult:  # the validation fold through the members, as their protocol maps it
        return run_evaluation(
            models,
            datamodule.val_dataloader(),
            labels.num_classes,
            labels.ignore_index,
            transforms,
            device,
            native_mask=validation_masks(datamodule, cfg.max_side) if native else None,
            probabilities=protocol_probabilities(module.protocol),
            **extra,
        )

    start = time.perf_counter()
    result = score(native_prediction=save_native if native and cfg.save_masks else None)
    seconds = time.perf_counter() - start
    calibration = calibrate(
        cfg, members, ckpts, datamodule, models, device, out_dir, lambda: score(keep_predictions=False)
    )
    payload = evaluation_payload(
        result,
        labels,
        transforms,
        run_cfg,
        ckpt,
        datamodule.split,
        max_side=cfg.max_side,
        data_root=str(datamodule.root),
        seconds=round(seconds, 3),
        members=[str(c) for c in ckpts],
        device=describe_device(device),
        precision=recorded_precision(precision),
    )
    if calibration is not None:
        calibration["ece_before"] = payload["ece"]
        payload["calibration"] = calibration
        log.info(
            "temperature %.3f fitted on %d pixels of the validation fold: ECE %.4f -> %.4f; predict with %s",
            calibration["temperature"],
            calibration["pixels"],
            calibration["ece_before"],
            calibration["ece_after"],
            ", ".join(calibration["checkpoints"]),
        )
    if len(members) > 1:
        payload["encoder"] = "+".join(encoder_name(m.run_config.encoder) for m in members)
        payload["family"] = "ensemble"
    write_examples(
        out_dir,
        result,
        datamodule.data,
        labels,
        int(cfg.num_examples),
        save_masks=bool(cfg.save_masks) and not native,
        viewer=bool(cfg.viewer),
        model_name=str(payload.get("encoder") or encoder_name(run_cfg.encoder)),
    )
    plot_confusion_matrix(payload, out_dir / CONFUSION_MATRIX_PNG)
    plot_class_distribution(payload, out_dir / CLASS_DISTRIBUTION_PNG)
    plot_iou_per_class(payload, out_dir / IOU_PER_CLASS_PNG)
    plot_reliability(payload, out_dir / RELIABILITY_PNG)
    MetricsRecord.from_dict(payload, strict=True).write(out_dir / METRICS)  # last: its presence = finished
    print(format_table(payload))
    log.info("%d images in %.1f s (tta=%s); results in %s", len(result.indices), seconds, cfg.tta, out_dir)
    return payload


def calibrate(cfg, members, ckpts, datamodule, models, device, out_dir, rescore) -> dict | None:
    """`calibrate=true`: fit one temperature on seeded pixels of the validation fold (the identity view, at the
    model's input size), count the calibration error again with it (`rescore`: where and as the metrics were
    counted), and write each member's checkpoint with it (calibrated.ckpt; calibrated_<k>.ckpt for an
    ensemble). The figures after are on the pixels the temperature was fitted on: optimistic, as every figure
    tuned on a validation fold is; judge it on another fold or new scans."""
    if not cfg.calibrate:
        return None
    labels = members[0].labels
    generator = torch.Generator().manual_seed(int(members[0].run_config.seed))
    probabilities = protocol_probabilities(members[0].protocol)
    logs, targets = [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            images, masks = batch["image"].to(device), batch["mask"].to(device)
            probs = probabilities(models, images, ("identity",))
            log_probs, target = sample_pixels(probs, masks, labels.ignore_index, CALIBRATION_PIXELS, generator)
            logs.append(log_probs)
            targets.append(target)
    log_probs, target = torch.cat(logs), torch.cat(targets)
    if not len(target):
        raise ValueError("calibrate=true: the validation fold has no annotated pixels to fit a temperature on")
    temperature, bounded = fit_temperature(log_probs, target)
    previous = [member.temperature for member in members]
    for member in members:
        member.temperature = member.temperature * temperature
    after = rescore()
    names = [CALIBRATED_CKPT] if len(ckpts) == 1 else [f"calibrated_{k}.ckpt" for k in range(len(ckpts))]
    for ckpt, member, name in zip(ckpts, members, names):
        write_with_temperature(ckpt, out_dir / name, member.temperature)
    for member, value in zip(members, previous):
        member.temperature = value
    return {
        "temperature": round(temperature, 6),
        "bounded": bounded,  # the fit ran off (a model no better than guessing): held at the bound
        "pixels": int(len(target)),
        "fitted_on": f"validation fold {members[0].run_config.fold}, up to {CALIBRATION_PIXELS} pixels per image",
        "ece_after": after.calibration.ece(),
        "reliability_after": after.calibration.payload()["reliability"],
        "checkpoints": [str(out_dir / name) for name in names],
    }


def write_examples(
    out_dir: Path,
    result,
    data,
    labels,
    num_examples: int,
    save_masks: bool,
    viewer: bool = True,
    model_name: str = "prediction",
) -> None:
    """predictions/masks/<id>.png for every image (`save_masks`: the input-size masks, when those are what was
    scored; native-size ones are written while scoring); panels for the best and worst by per-image mIoU, and
    (`viewer`) a viewer page for each."""
    ids = data.ids
    pred_dir = out_dir / PREDICTIONS
    if save_masks:
        for index, pred in zip(result.indices, result.predictions):
            save_image(out_dir / PREDICTED_MASKS / f"{ids[index]}.png", pred)
        for index, spread in zip(result.indices, result.uncertainty):
            save_image(out_dir / PREDICTED_UNCERTAINTY / f"{ids[index]}.png", spread)
    scores = result.per_image_miou()
    # only images with scored pixels are ranked: one whose pixels are all unannotated has no score (NaN)
    scored = np.flatnonzero(np.isfinite(scores))
    order = scored[np.argsort(-scores[scored], kind="stable")]
    n = min(num_examples, len(order) // 2 if len(order) > 1 else len(order))
    chosen = [("best", r, order[r]) for r in range(n)] + [("worst", r, order[-1 - r]) for r in range(n)]
    for kind, rank, k in chosen:
        index = result.indices[k]
        stem = pred_dir / f"{kind}{rank + 1:02d}_{ids[index]}"
        image = np.asarray(data.images[index])
        save_image(Path(f"{stem}_input.png"), image)
        truth = np.asarray(data.masks[index])
        # palette PNGs: they look as the colourised masks did, and their pixel values are the class ids (the
        # study page's comparison viewer reads them back)
        save_image(Path(f"{stem}_gt.png"), palette_mask(truth, labels))
        save_image(Path(f"{stem}_pred.png"), palette_mask(result.predictions[k], labels))
        overlay_figure(
            image,
            result.predictions[k],
            result.confidence[k],
            labels,
            Path(f"{stem}_overlay.png"),
            title=f"{ids[index]}  mIoU {scores[k]:.3f}",
        )
        if viewer:  # the same image, truth and prediction as zoomable layers, with where they differ
            links = [{"href": f"{stem.name}{suffix}.png", "text": what} for what, suffix in PANEL_FILES.items()]
            content = scored_content(
                str(ids[index]),
                image,
                truth,
                {model_name: result.predictions[k]},
                labels,
                subtitle=f"{kind} {rank + 1} of the validation fold: mIoU {scores[k]:.3f}",
                links=links,
                uncertainty=result.uncertainty[k] if result.uncertainty else None,  # tta=true or an ensemble
            )
            write_viewer(Path(f"{stem}{VIEWER_SUFFIX}"), content, labels)
