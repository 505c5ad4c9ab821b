"""Resize every image once to `image_size`, keep the result on disk, and load it back as uint8 arrays.

The cache key covers the source files (path, size, mtime), the size, the label map and the source-id pattern,
so editing a mask, the label map or the grouping rebuilds it, and every later run (any encoder, any fold)
starts without decoding a PNG.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from heritage_seg.data.imageio import raw_mask_array, to_rgb
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.readers import Reader, RecordInfo, Sample
from heritage_seg.files import atomic_folder

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: class presence at the source resolution (presence.npy), EXIF-oriented images


@dataclass
class PreparedData:
    """All images of a data set at one size: images (N, S, S, 3) uint8, masks (N, S, S) uint8 class ids."""

    records: list[RecordInfo]
    images: np.ndarray
    masks: np.ndarray
    presence: np.ndarray | None = None  # (N, 256) bool: class ids present in each mask at its source resolution

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def class_pixel_counts(self, num_classes: int, indices: np.ndarray | None = None) -> np.ndarray:
        """Pixels per class id over the chosen images (ignore pixels are not counted)."""
        masks = self.masks if indices is None else self.masks[np.asarray(indices)]
        return np.bincount(masks.reshape(-1), minlength=256)[:num_classes].astype(np.int64)

    def class_presence(self, num_classes: int) -> np.ndarray:
        """(N, C) bool: which classes occur in each image, read at the SOURCE resolution when the cache holds it:
        a 2-px crack must not vanish (and move its image to another fold) because the cache is 32 px."""
        if self.presence is not None:
            return self.presence[:, :num_classes].copy()
        return np.stack([np.bincount(m.reshape(-1), minlength=256)[:num_classes] > 0 for m in self.masks])


def preprocess(sample: Sample, image_size: int, labels: LabelMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample -> (S, S, 3) uint8 image (bilinear, antialiased), (S, S) uint8 class-id mask (nearest) and the
    (256,) bool presence of each class id at the source resolution."""
    if sample.image.size != sample.mask.size:
        raise ValueError(
            f"{sample.name}: image is {sample.image.size[0]}x{sample.image.size[1]} but its mask is "
            f"{sample.mask.size[0]}x{sample.mask.size[1]}; they must be the same size"
        )
    raw = raw_mask_array(sample.mask, f"{sample.name} (mask)")
    present = np.flatnonzero(np.bincount(raw.reshape(-1), minlength=256)).astype(np.uint8)
    present_ids = labels.encode(present, f"{sample.name} (mask)")  # checks every raw value at full resolution
    presence = np.zeros(256, dtype=bool)
    presence[present_ids] = True
    size = (image_size, image_size)
    image = to_rgb(sample.image, sample.name).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    mask = Image.fromarray(raw).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.uint8), labels.encode(np.asarray(mask), sample.name), presence


def cache_key(reader: Reader, image_size: int, labels: LabelMap) -> str:
    # the source-id pattern too: the cache stores each image's source id, which decides the folds
    payload = json.dumps(
        [CACHE_VERSION, reader.form, str(reader.root.resolve()), reader.fingerprint(), image_size, labels.to_dict(),
         list(labels.ignore_raw), reader.source_pattern],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cache_path(cache_dir: str | Path, reader: Reader, image_size: int, labels: LabelMap) -> Path:
    return Path(cache_dir).expanduser() / f"{reader.form}-{image_size}px-{cache_key(reader, image_size, labels)}"


def build_cache(reader: Reader, image_size: int, labels: LabelMap, cache_dir: str | Path) -> Path:
    """Decode + resize every sample once; written to a temp folder and renamed, so a crash leaves no half cache."""
    target = cache_path(cache_dir, reader, image_size, labels)
    if (target / "meta.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    records = reader.records()
    n = len(records)
    log.info("Preparing %d images of %s at %d px into %s (once)", n, reader.root, image_size, target)
    with atomic_folder(target) as tmp:  # another process may finish the same cache first: theirs is kept
        images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, image_size, image_size, 3))
        masks = np.lib.format.open_memmap(tmp / "masks.npy", "w+", np.uint8, (n, image_size, image_size))
        presence = np.zeros((n, 256), dtype=bool)
        seen = []
        for i, sample in enumerate(reader.samples()):
            if i >= n or sample.info.id != records[i].id:
                raise RuntimeError(f"{reader.root}: data changed while it was being read; run again")
            images[i], masks[i], presence[i] = preprocess(sample, image_size, labels)
            seen.append(sample.info)
        if len(seen) != n:
            raise RuntimeError(f"{reader.root}: expected {n} samples, read {len(seen)}")
        images.flush()
        masks.flush()
        del images, masks
        np.save(tmp / "presence.npy", presence)
        meta = {"records": [r.__dict__ for r in seen], "image_size": image_size, "root": str(reader.root)}
        (tmp / "meta.json").write_text(json.dumps(meta))
    return target


def load_cache(path: Path, preload: bool = True) -> PreparedData:
    """`preload=True` reads everything into RAM; otherwise the arrays are memory-mapped."""
    meta = json.loads((path / "meta.json").read_text())
    mode = None if preload else "r"
    records = [RecordInfo(**r) for r in meta["records"]]
    return PreparedData(records, np.load(path / "images.npy", mmap_mode=mode), np.load(path / "masks.npy", mmap_mode=mode),
                        np.load(path / "presence.npy"))
