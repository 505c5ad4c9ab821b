"""Where the compared models disagree: for the best and worst validation image of each of the baseline's folds
(evaluate's panels), a viewer page with the image, its annotation, every group's prediction of that image (from
the same fold's run of each group), where each is wrong and, for two groups, where they disagree.

The predictions are read back from what `evaluate` wrote: the baseline's own panel (`_pred.png`, class ids in a
palette PNG) and the other runs' `predictions/masks/<id>.png`, or their own panel of that image. A run without
either is left out of that page (the page says which). A mask at another resolution than the panel (native
scoring) is resized to it, nearest neighbour, and the page says so."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.reporting.viewer import scored_content, write_viewer
from heritage_seg.runs.folder import (
    CONFIG,
    PANEL_FILES,
    PREDICTED_MASKS,
    PREDICTIONS,
    VIEWER_SUFFIX,
    panel_overlays,
    panel_stem,
)

log = logging.getLogger(__name__)
COMPARE_DIR = "compare"  # beside aggregate's report.html: compare/fold<k>_<best|worst>_<id>_viewer.html


def _prediction_of(run: Path, image_id: str) -> Path | None:
    for pattern in (f"{PREDICTED_MASKS}/{image_id}.png", f"*/{PREDICTED_MASKS}/{image_id}.png"):
        found = sorted(run.glob(pattern))
        if found:
            return found[0]
    own_panel = f"{PREDICTIONS}/*_{image_id}{PANEL_FILES['prediction']}.png"
    for pattern in (own_panel, f"*/{own_panel}"):
        found = sorted(run.glob(pattern))
        if found:
            return found[0]
    return None


def _labels(run: Path) -> LabelMap:
    return LabelMap.from_config(OmegaConf.to_container(OmegaConf.load(run / CONFIG).labels), str(run / CONFIG))


def comparison_viewers(summary: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the pages; returns {panel overlay path: page path relative to `out`} for the study page's links."""
    groups = summary["groups"]
    base_name = summary.get("baseline") or next(iter(groups))
    base = groups[base_name]
    others = [name for name in groups if name != base_name]
    written: dict[str, str] = {}
    for fold, run in zip(base["folds"], base["runs"]):
        run = Path(run)
        labels = None  # read once per run, when a panel needs it
        for overlay in panel_overlays(run):
            files = {kind: Path(f"{panel_stem(overlay)}{suffix}.png") for kind, suffix in PANEL_FILES.items()}
            stem = panel_stem(overlay).name  # best01_<id>
            kind, image_id = stem.split("_", 1)
            if not all(files[k].is_file() for k in ("image", "truth", "prediction")):
                continue  # a panel without its image, truth or prediction files: nothing to lay over each other
            try:
                labels = labels or _labels(run)
            except (ValueError, KeyError, AttributeError, OSError) as err:
                log.warning("no comparison viewer for %s: its run's label map cannot be read (%s)", run, err)
                break  # the same for every panel of this run
            image = np.asarray(Image.open(files["image"]).convert("RGB"))
            truth = np.asarray(Image.open(files["truth"]))
            if truth.ndim != 2:  # an evaluation from before the panels held class ids: nothing to compare
                continue
            predictions = {groups[base_name]["label"]: np.asarray(Image.open(files["prediction"]))}
            notes, missing = [], []
            for name in others:
                group = groups[name]
                if fold not in group["folds"]:
                    missing.append(group["label"])
                    continue
                path = _prediction_of(Path(group["runs"][group["folds"].index(fold)]), image_id)
                if path is None:
                    missing.append(group["label"])
                    continue
                with Image.open(path) as img:
                    if img.size != (truth.shape[1], truth.shape[0]):
                        notes.append(f"{group['label']}'s mask resized from {img.size[0]} × {img.size[1]}")
                        img = img.resize((truth.shape[1], truth.shape[0]), Image.Resampling.NEAREST)
                    predictions[group["label"]] = np.asarray(img)
            subtitle = f"fold {fold}, the baseline's {kind[:-2]} image {int(kind[-2:])}"
            if missing:
                subtitle += f"; no prediction of it from {', '.join(missing)} (run evaluate on that run)"
            if notes:
                subtitle += "; " + "; ".join(notes)
            page = out / COMPARE_DIR / f"fold{fold}_{stem}{VIEWER_SUFFIX}"
            write_viewer(page, scored_content(image_id, image, truth, predictions, labels, subtitle), labels)
            written[str(overlay)] = os.path.relpath(page, out)
    if written:
        log.info("wrote %d comparison viewer(s) to %s", len(written), out / COMPARE_DIR)
    return written
