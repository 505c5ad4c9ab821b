"""What `python -m heritage_seg.preannotate` does, as a function of its composed config. The model's masks of a
set of scans (select's choice, in its order, or a folder) as COCO 1.0 pre-annotations with RLE masks, beside
copies of the scans, to load into an annotation tool (CVAT: create a task from images/, then Upload annotations
-> COCO 1.0) and correct there:
    python -m heritage_seg.preannotate ckpt=…/best.ckpt input=outputs/select/<date>/<time>"""

from __future__ import annotations

import csv
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from heritage_seg.core.device import inference_precision, pick_device, with_autocast
from heritage_seg.core.files import write_json_atomic
from heritage_seg.data.coco import categories, mask_annotations
from heritage_seg.data.imageio import list_inputs, object_mask, open_image, to_rgb
from heritage_seg.inference.mapping import map_scan, scan_scale
from heritage_seg.inference.tta import resolve
from heritage_seg.runs.folder import PREANNOTATION_IMAGES, PREANNOTATIONS, SAME_MAPPING, SELECTION_CSV, claim_output_dir
from heritage_seg.training.module import checkpoint_paths, load_members

log = logging.getLogger(__name__)


def scans_to_annotate(setting: str) -> list[Path]:
    """select's output folder or its selection.csv (the chosen scans, in rank order), a folder, or one scan."""
    path = Path(setting).expanduser()
    table = path / SELECTION_CSV if path.is_dir() and (path / SELECTION_CSV).is_file() else path
    if table.name == SELECTION_CSV and table.is_file():
        with table.open() as handle:
            rows = sorted(csv.DictReader(handle), key=lambda row: int(row["rank"]))
        scans = [Path(row["path"]) for row in rows]
        missing = [str(s) for s in scans if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"input={table}: chosen scans no longer where select found them: {missing[:3]}")
        return scans
    return list_inputs(path)


def preannotate(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    scans = scans_to_annotate(str(cfg.input))
    names = [s.name for s in scans]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise ValueError(f"input={cfg.input}: scans share file names {doubles}; an annotation tool keys images by name")
    ckpts = checkpoint_paths(cfg.ckpt)
    members = load_members(ckpts, SAME_MAPPING, "an ensemble maps with one label map and one way of sizing scans")
    labels, protocol = members[0].labels, members[0].protocol
    device = pick_device(cfg.device)
    precision = inference_precision(cfg.precision, device)
    scan_scale(cfg.scale, protocol, 1, 1)  # a bad scale fails before any folder is touched
    claim_output_dir(out_dir, cfg, (PREANNOTATIONS,))
    for member in members:
        member.to(device)
    logits = [with_autocast(m, device, precision) for m in members]
    transforms = resolve(bool(cfg.tta))
    images, annotations = [], []
    for image_id, path in enumerate(tqdm(scans, desc="scans", unit="scan"), start=1):
        decoded = open_image(path, str(path))
        inside = object_mask(decoded)
        image = np.asarray(to_rgb(decoded, str(path)))
        height, width = image.shape[:2]
        mask = map_scan(
            image,
            logits,
            protocol,
            labels.num_classes,
            scan_scale(cfg.scale, protocol, width, height),
            transforms,
            False,
            device,
            batch_size=int(cfg.batch_size),
        ).mask
        if inside is not None:
            mask = np.where(inside, mask, np.uint8(labels.ignore_index))
        annotations += mask_annotations(mask, labels, image_id, len(annotations) + 1)
        images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
        (out_dir / PREANNOTATION_IMAGES).mkdir(exist_ok=True)
        shutil.copy2(path, out_dir / PREANNOTATION_IMAGES / path.name)  # as read: EXIF turns are the tool's too
    document = {
        "info": {
            "description": "heritage_seg pre-annotations: the model's damage masks, to correct",
            "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoints": [str(c) for c in ckpts],
        },
        "licenses": [],
        "categories": categories(labels),
        "images": images,
        "annotations": annotations,
    }
    write_json_atomic(out_dir / PREANNOTATIONS, document)
    log.info(
        "%d scan(s), %d damage region(s) -> %s (with the scans in %s/)",
        len(images),
        len(annotations),
        out_dir / PREANNOTATIONS,
        out_dir / PREANNOTATION_IMAGES,
    )
    return {"annotations": str(out_dir / PREANNOTATIONS), "images": len(images)}
