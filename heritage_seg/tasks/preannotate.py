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

from omegaconf import DictConfig
from tqdm import tqdm

from heritage_seg.core.files import write_json_atomic
from heritage_seg.data.coco import categories, mask_annotations
from heritage_seg.data.imageio import list_inputs
from heritage_seg.inference.mapping import scan_scale
from heritage_seg.inference.segmenter import Segmenter
from heritage_seg.runs.claim import claim_output_dir
from heritage_seg.runs.folder import PREANNOTATION_IMAGES, PREANNOTATIONS, SELECTION_CSV

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
    segmenter = Segmenter.load(cfg.ckpt, cfg.device, bool(cfg.tta), cfg.precision)
    labels = segmenter.labels
    scan_scale(cfg.scale, segmenter.protocol, 1, 1)  # a bad scale fails before any folder is touched
    claim_output_dir(out_dir, cfg, (PREANNOTATIONS,))
    images, annotations = [], []
    for image_id, path in enumerate(tqdm(scans, desc="scans", unit="scan"), start=1):
        # what is not object in a cut-out is left unannotated (ignore_index)
        mapped = segmenter.map(path, scale=cfg.scale, uncertainty=False, batch_size=int(cfg.batch_size))
        mask = mapped.classes
        height, width = mask.shape
        annotations += mask_annotations(mask, labels, image_id, len(annotations) + 1)
        images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
        (out_dir / PREANNOTATION_IMAGES).mkdir(exist_ok=True)
        shutil.copy2(path, out_dir / PREANNOTATION_IMAGES / path.name)  # as read: EXIF turns are the tool's too
    document = {
        "info": {
            "description": "heritage_seg pre-annotations: the model's damage masks, to correct",
            "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoints": segmenter.sources,
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
