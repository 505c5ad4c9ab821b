"""What `python -m heritage_seg.import_annotations` does, as a function of its composed config. Corrected
annotations (COCO 1.0, e.g. CVAT's export) back into an ARTeFACT-format folder that `train` reads:
    python -m heritage_seg.import_annotations annotations=<file.json> root=data/my_collection

Per image: `annotations/<id>.png` in the label map's raw values (pixels no annotation covers are the clean class,
the `ignore` category the label map's not-annotated value), the image copied to `images/`, a `metadata.csv` row.
Everything is checked before anything is written (unknown class names, images missing or of another size than
the file says, ids already annotated without `overwrite=true`, segmentations that do not decode), and every file
is written atomically: a refused import leaves the folder as it was."""

from __future__ import annotations

import csv
import io
import logging
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from heritage_seg.core.cli import config_file
from heritage_seg.core.files import save_image, write_file_atomic, write_text_atomic
from heritage_seg.data.coco import IGNORE_CATEGORY, decode, read_coco
from heritage_seg.data.labels import LabelMap

log = logging.getLogger(__name__)
METADATA_FIELDS = ["id", "material", "content"]


def _raw_mask(image: dict, annotations: list[dict], names: dict[int, str], labels: LabelMap, where: str) -> np.ndarray:
    height, width = int(image["height"]), int(image["width"])
    raw_of = dict(zip(labels.names, labels.raw_values))
    mask = np.full((height, width), labels.raw_values[labels.clean_index], dtype=np.uint8)
    for annotation in sorted(annotations, key=lambda a: a.get("id", 0)):  # a later annotation wins an overlap
        name = names[annotation["category_id"]]
        if name == IGNORE_CATEGORY:
            if not labels.ignore_raw:
                raise ValueError(f"{where}: an '{IGNORE_CATEGORY}' region, but the label map has no ignore_raw value")
            value = labels.ignore_raw[0]
        else:
            value = raw_of[name]
        mask[decode(annotation["segmentation"], height, width, f"{where}, annotation {annotation.get('id')}")] = value
    return mask


def import_annotations(cfg: DictConfig) -> dict[str, Any]:
    labels = LabelMap.from_config(cfg.labels, config_file("labels"))
    source = Path(str(cfg.annotations)).expanduser()
    document = read_coco(source)
    images_dir = Path(str(cfg.images)).expanduser() if cfg.images else source.parent / "images"
    root = Path(str(cfg.root)).expanduser()

    names = {int(c["id"]): str(c["name"]) for c in document["categories"]}
    used = {names.get(int(a["category_id"]), f"<category id {a['category_id']}>") for a in document["annotations"]}
    unknown = sorted(used - set(labels.names) - {IGNORE_CATEGORY})
    if unknown:
        raise ValueError(
            f"annotations={source}: class name(s) {unknown} are not in the label map ({list(labels.names)}); "
            "rename them in the tool, or import with labels=<the map that has them>"
        )
    if labels.clean_name in used:
        log.info("annotations of the clean class %s are imported as clean pixels", labels.clean_name)
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in document["annotations"]:
        by_image[int(annotation["image_id"])].append(annotation)

    plan = []  # checked completely before anything is written
    for image in document["images"]:
        path = images_dir / str(image["file_name"])
        where = f"annotations={source}, image {image['file_name']}"
        if not path.is_file():
            raise FileNotFoundError(f"{where}: {path} not found; pass images=<the folder of the annotated images>")
        with Image.open(path) as img:
            size = img.size
        if size != (int(image["width"]), int(image["height"])):
            raise ValueError(
                f"{where}: the file says {image['width']} x {image['height']} px, {path} is {size[0]} x {size[1]}; "
                "import the images the annotations were made on"
            )
        sample_id = Path(str(image["file_name"])).stem
        target = root / "annotations" / f"{sample_id}.png"
        if target.exists() and not cfg.overwrite:
            raise FileExistsError(
                f"root={root}: {target} exists already; pass overwrite=true to replace it with the corrected one"
            )
        mask = _raw_mask(image, by_image.get(int(image["id"]), []), names, labels, where)
        plan.append((path, sample_id, mask))

    (root / "images").mkdir(parents=True, exist_ok=True)
    for path, sample_id, mask in plan:
        for old in (root / "images").glob(f"{sample_id}.*"):
            if old.name != path.name:  # one image per id: the folder reader would refuse two
                old.unlink()
        image_target = root / "images" / path.name
        if not (image_target.exists() and image_target.read_bytes() == path.read_bytes()):
            write_file_atomic(image_target, lambda tmp, src=path: shutil.copyfile(src, tmp))
        save_image(root / "annotations" / f"{sample_id}.png", Image.fromarray(mask, mode="L"))
    _add_metadata(root / "metadata.csv", [sample_id for _, sample_id, _ in plan], cfg)
    log.info("%d annotation(s) from %s -> %s", len(plan), source, root)
    return {"imported": [sample_id for _, sample_id, _ in plan], "root": str(root)}


def _add_metadata(path: Path, ids: list[str], cfg: DictConfig) -> None:
    rows, fields = [], METADATA_FIELDS
    if path.is_file():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or METADATA_FIELDS)
            rows = list(reader)
    known = {row.get("id") for row in rows}
    rows += [{"id": i, "material": str(cfg.material), "content": str(cfg.content)} for i in ids if i not in known]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
