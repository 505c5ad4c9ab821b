"""Images without annotations, for self-supervised pre-training (`python -m heritage_seg.pretrain`).

`data.root` may be a folder of scans (searched recursively, any image type `predict` reads), an ARTeFACT-format
folder (its images/, masks ignored) or the hub's parquet shards (masks ignored). Each image is decoded once,
squashed to `image_size` x `image_size` (the training default protocol) and kept as uint8 in memory; batches
go to the device as uint8 and are normalised there, as in training.

An image that cannot be decoded is skipped and listed (in the log and in pretrained.json): in a folder of
thousands of scans one broken file should not end a long job; none readable at all is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.imageio import open_image, to_rgb
from heritage_seg.data.readers import (
    DEFAULT_SOURCE_PATTERN,
    IMAGE_EXTENSIONS,
    PARQUET_GLOBS,
    open_reader,
    source_id_of,
)

log = logging.getLogger(__name__)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(part.startswith(".") for part in p.parts)
    )


def _decoded(root: Path) -> Iterator[tuple[str, str, Image.Image | Exception]]:
    """(id, name for messages, image or the error decoding it) for every image under `root`."""
    if not (root / "annotations").is_dir() and any(next(root.glob(p), None) for p in PARQUET_GLOBS):
        for sample in open_reader(root).samples():  # parquet shards: the masks are decoded too, and dropped
            yield sample.info.id, sample.name, sample.image
        return
    folder = root / "images" if (root / "annotations").is_dir() else root  # an ARTeFACT folder, or scans
    for path in _image_files(folder):
        try:
            yield path.relative_to(folder).with_suffix("").as_posix(), str(path), open_image(path, str(path))
        except (ValueError, OSError) as err:
            yield path.stem, str(path), err


def load_unlabelled(
    root: str | Path,
    image_size: int,
    exclude_augmented: bool = True,
    exclude_ids: Sequence[str] = (),
    source_pattern: str = DEFAULT_SOURCE_PATTERN,
) -> tuple[torch.Tensor, list[str], list[dict[str, str]], dict[str, int]]:
    """(uint8 images N x 3 x S x S, their ids, the images skipped as unreadable, counts of what was left out)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root={root}: folder does not exist; point it at a folder of scans")
    excluded = set(exclude_ids)
    arrays, ids, skipped = [], [], []
    left_out = {"augmented_copies": 0, "excluded_ids": 0}
    for image_id, name, image in _decoded(root):
        leaf = image_id.rsplit("/", 1)[-1]
        if exclude_augmented and source_id_of(leaf, source_pattern) != leaf:
            left_out["augmented_copies"] += 1
            continue
        if leaf in excluded:
            left_out["excluded_ids"] += 1
            continue
        if isinstance(image, Exception):
            log.warning("skipped %s: %s", name, image)
            skipped.append({"file": name, "error": str(image)})
            continue
        rgb = to_rgb(image, name).resize((image_size, image_size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy())
        ids.append(image_id)
    if not arrays:
        reason = f"{len(skipped)} unreadable" if skipped else "none found"
        raise ValueError(
            f"data.root={root}: no images to pre-train on ({reason}; looked for {', '.join(IMAGE_EXTENSIONS)} "
            f"files{', after leaving out ' + str(left_out) if any(left_out.values()) else ''})"
        )
    return torch.from_numpy(np.stack(arrays)), ids, skipped, left_out


class _Images(Dataset):
    def __init__(self, images: torch.Tensor, flip: bool):
        self.images, self.flip = images, flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        if self.flip:
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
            if torch.rand(()) < 0.5:
                image = image.flip(-2)
        return image


class UnlabelledDataModule(L.LightningDataModule):
    """All readable images, a few held out (`val_images`, chosen by `seed`) for the validation loss and the
    reconstruction pictures; the rest, with random flips, for training."""

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        batch_size: int,
        val_images: int = 8,
        num_workers: int = 0,
        seed: int = 42,
        exclude_augmented: bool = True,
        exclude_ids: Sequence[str] = (),
        source_pattern: str = DEFAULT_SOURCE_PATTERN,
    ):
        super().__init__()
        Protocol("squash", image_size)  # pre-training squashes every image to image_size x image_size
        self.root, self.image_size, self.batch_size = Path(root).expanduser(), image_size, batch_size
        self.val_images, self.num_workers, self.seed = val_images, num_workers, seed
        self.exclude_augmented, self.exclude_ids, self.source_pattern = exclude_augmented, exclude_ids, source_pattern
        self.skipped: list[dict[str, str]] = []
        self.left_out: dict[str, int] = {}
        self._train = self._val = None

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        images, _, self.skipped, self.left_out = load_unlabelled(
            self.root, self.image_size, self.exclude_augmented, self.exclude_ids, self.source_pattern
        )
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        n_val = min(self.val_images, len(images) // 4)  # never more than a quarter of a small folder
        self._val, self._train = images[order[:n_val]], images[order[n_val:]]
        log.info(
            "pre-training on %d images (%d held out for the validation loss and pictures) from %s%s",
            len(self._train),
            n_val,
            self.root,
            f"; skipped {len(self.skipped)} unreadable" if self.skipped else "",
        )

    @property
    def num_train(self) -> int:
        return 0 if self._train is None else len(self._train)

    @property
    def num_val(self) -> int:
        return 0 if self._val is None else len(self._val)

    def val_batch(self, count: int) -> torch.Tensor:
        """The first `count` held-out images, the same every epoch: what the pictures show."""
        assert self._val is not None
        return self._val[:count]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _Images(self._train, flip=True),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self._train) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self._val is None or not len(self._val):
            return []
        return DataLoader(_Images(self._val, flip=False), batch_size=self.batch_size, num_workers=0)
