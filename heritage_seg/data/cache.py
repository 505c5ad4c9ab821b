"""Resize every image once, keep the result on disk, and load it back as uint8 arrays.

Two ways to resize, as the training protocol says (heritage_seg.core.protocol.Protocol): `squash` every image to
image_size x image_size (the seed's protocol; aspect ratio not kept), or `longest_side`: the longest side at most
max_side, aspect kept, never upscaled (the crop protocol trains on random crops of these). Either way the cache
also keeps every mask at its stored resolution (`native_masks`), so native-resolution scoring never decodes a PNG again.

The cache key covers the source files (path, size, mtime), the resize, the label map and the source-id pattern,
so editing a mask, the label map or the grouping rebuilds it, and every later run (any encoder, any fold)
starts without decoding a PNG.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from heritage_seg.core.files import atomic_folder
from heritage_seg.core.protocol import Protocol
from heritage_seg.data.imageio import raw_mask_array, to_rgb
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.readers import Reader, RecordInfo, Sample

log = logging.getLogger(__name__)
# 2: class presence at the source resolution (presence.npy), EXIF-oriented images
# 3: masks at their stored resolution (native_masks), the resize protocol in the key
CACHE_VERSION = 3


class Ragged:
    """Arrays of different shapes (uint8) in one flat buffer that can be memory-mapped: item i is a view.
    Written by hand: numpy has no ragged array, and one file per image would mean 418 opens per run."""

    def __init__(self, flat: np.ndarray, shapes: np.ndarray):
        self.flat, self.shapes = flat, np.asarray(shapes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(np.prod(self.shapes, axis=1))])

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        return self.flat[self.offsets[i] : self.offsets[i + 1]].reshape(self.shapes[i])

    @classmethod
    def load(cls, folder: Path, name: str, preload: bool) -> Ragged:
        flat = (
            np.fromfile(folder / f"{name}.bin", np.uint8)
            if preload
            else np.memmap(folder / f"{name}.bin", np.uint8, "r")
        )
        return cls(flat, np.load(folder / f"{name}_shapes.npy"))


class RaggedWriter:
    """Appends arrays to <name>.bin and records their shapes in <name>_shapes.npy (see Ragged)."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name, self.shapes = folder, name, []
        self.file = open(folder / f"{name}.bin", "wb")

    def append(self, array: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        self.shapes.append(array.shape)

    def close(self) -> None:
        self.file.close()
        np.save(self.folder / f"{self.name}_shapes.npy", np.asarray(self.shapes, dtype=np.int64))


class StackWriter:
    """Appends same-shape arrays as the rows of one (N, *shape) <name>.npy, memory-mapped while written: the
    squashed layout, with RaggedWriter's interface so the cache build is one loop for both layouts."""

    def __init__(self, folder: Path, name: str, n: int, shape: tuple[int, ...]):
        self.array = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.uint8, (n, *shape))
        self.count = 0

    def append(self, array: np.ndarray) -> None:
        self.array[self.count] = array
        self.count += 1

    def close(self) -> None:
        self.array.flush()
        self.array = None  # release the map before the folder is renamed


@dataclass
class PreparedData:
    """All images of a data set as cached: images (N, S, S, 3) uint8 and masks (N, S, S) uint8 class ids when
    squashed, or `Ragged` (item i: (H_i, W_i, 3) / (H_i, W_i)) when resized by the longest side; plus every mask
    at its stored resolution (`native_masks`, Ragged)."""

    records: list[RecordInfo]
    images: np.ndarray | Ragged
    masks: np.ndarray | Ragged
    presence: np.ndarray | None = None  # (N, 256) bool: class ids present in each mask at its source resolution
    native_masks: Ragged | None = None

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def class_pixel_counts(self, num_classes: int, indices: np.ndarray | None = None) -> np.ndarray:
        """Pixels per class id over the chosen images (ignore pixels are not counted); image by image, which
        serves both layouts (squashed stack, Ragged) and copies no more than one mask at a time."""
        counts = np.zeros(256, dtype=np.int64)
        for i in range(len(self.records)) if indices is None else np.asarray(indices):
            counts += np.bincount(np.asarray(self.masks[i]).reshape(-1), minlength=256)
        return counts[:num_classes]

    def class_presence(self, num_classes: int) -> np.ndarray:
        """(N, C) bool: which classes occur in each image, read at the SOURCE resolution when the cache holds it:
        a 2-px crack must not vanish (and move its image to another fold) because the cache is 32 px."""
        if self.presence is not None:
            return self.presence[:, :num_classes].copy()
        return np.stack(
            [np.bincount(self.masks[i].reshape(-1), minlength=256)[:num_classes] > 0 for i in range(len(self.records))]
        )


@dataclass
class Prepared:
    """One sample as cached: image and class-id mask at the cache's size, the mask at its stored size, and the
    (256,) bool presence of each class id at the source resolution."""

    image: np.ndarray
    mask: np.ndarray
    native_mask: np.ndarray
    presence: np.ndarray


def preprocess(sample: Sample, protocol: Protocol, labels: LabelMap) -> Prepared:
    """Image resized bilinearly (antialiased), mask by nearest neighbour; the stored mask encoded as it is."""
    if sample.image.size != sample.mask.size:
        raise ValueError(
            f"{sample.name}: image is {sample.image.size[0]}x{sample.image.size[1]} but its mask is "
            f"{sample.mask.size[0]}x{sample.mask.size[1]}; they must be the same size"
        )
    raw = raw_mask_array(sample.mask, f"{sample.name} (mask)")
    native = labels.encode(raw, f"{sample.name} (mask)")  # checks every raw value at full resolution
    presence = np.zeros(256, dtype=bool)
    presence[np.flatnonzero(np.bincount(native.reshape(-1), minlength=256))] = True
    height, width = protocol.cached_size(sample.image.size[1], sample.image.size[0])
    size = (width, height)  # PIL's order
    image = to_rgb(sample.image, sample.name)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    mask = (
        native
        if size == sample.mask.size
        else np.asarray(Image.fromarray(native).resize(size, Image.Resampling.NEAREST))
    )
    return Prepared(np.asarray(image, dtype=np.uint8), mask, native, presence)


def cache_key(reader: Reader, protocol: Protocol, labels: LabelMap) -> str:
    # the source-id pattern too: the cache stores each image's source id, which decides the folds
    payload = json.dumps(
        [
            CACHE_VERSION,
            reader.form,
            str(reader.root.resolve()),
            reader.fingerprint(),
            protocol.resize,
            protocol.cache_side,
            labels.to_dict(),
            list(labels.ignore_raw),
            reader.source_pattern,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def default_cache_dir() -> str:
    """Where caches go when no data.cache_dir is given (conf/data/artefact.yaml says the same): $HERITAGE_SEG_CACHE,
    else ~/.cache/heritage_seg. A shared model folder leaves the exporting machine's cache_dir out."""
    return os.environ.get("HERITAGE_SEG_CACHE") or "~/.cache/heritage_seg"


def cache_path(cache_dir: str | Path, reader: Reader, protocol: Protocol, labels: LabelMap) -> Path:
    return Path(cache_dir).expanduser() / f"{reader.form}-{protocol.cache_label}-{cache_key(reader, protocol, labels)}"


def build_cache(reader: Reader, protocol: Protocol, labels: LabelMap, cache_dir: str | Path) -> Path:
    """Decode + resize every sample once; written to a temp folder and renamed, so a crash leaves no half cache."""
    target = cache_path(cache_dir, reader, protocol, labels)
    if (target / "meta.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    records = reader.records()
    n, side = len(records), protocol.cache_side
    log.info("Preparing %d images of %s (%s %d px) into %s (once)", n, reader.root, protocol.resize, side, target)
    with atomic_folder(target) as tmp:  # another process may finish the same cache first: theirs is kept
        if not protocol.crops:
            images, masks = StackWriter(tmp, "images", n, (side, side, 3)), StackWriter(tmp, "masks", n, (side, side))
        else:
            images, masks = RaggedWriter(tmp, "images"), RaggedWriter(tmp, "masks")
        native = RaggedWriter(tmp, "native_masks")
        presence = np.zeros((n, 256), dtype=bool)
        seen = []
        for i, sample in enumerate(reader.samples()):
            if i >= n or sample.info.id != records[i].id:
                raise RuntimeError(f"{reader.root}: data changed while it was being read; run again")
            one = preprocess(sample, protocol, labels)
            images.append(one.image)
            masks.append(one.mask)
            native.append(one.native_mask)
            presence[i] = one.presence
            seen.append(sample.info)
        if len(seen) != n:
            raise RuntimeError(f"{reader.root}: expected {n} samples, read {len(seen)}")
        for writer in (images, masks, native):
            writer.close()
        np.save(tmp / "presence.npy", presence)
        meta = {
            "records": [r.__dict__ for r in seen],
            "resize": protocol.resize,
            "size": side,
            "root": str(reader.root),
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
    return target


def load_cache(path: Path, preload: bool = True) -> PreparedData:
    """`preload=True` reads the training arrays into RAM; otherwise they are memory-mapped. The masks at their
    stored resolution are always memory-mapped: only the validation images' are read, when scored."""
    meta = json.loads((path / "meta.json").read_text())
    mode = None if preload else "r"
    records = [RecordInfo(**r) for r in meta["records"]]
    if meta["resize"] == "squash":
        images, masks = np.load(path / "images.npy", mmap_mode=mode), np.load(path / "masks.npy", mmap_mode=mode)
    else:
        images, masks = Ragged.load(path, "images", preload), Ragged.load(path, "masks", preload)
    return PreparedData(
        records, images, masks, np.load(path / "presence.npy"), Ragged.load(path, "native_masks", preload=False)
    )
