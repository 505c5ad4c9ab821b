"""Readers for the two forms an ARTeFACT copy comes in.

(a) the Hugging Face parquet shards (`data/train-*.parquet`, image cells as `{bytes, path}` structs), read
    with pyarrow one small batch at a time so a 4 GB download never sits in RAM at once;
(b) an exported folder: `images/<id>.<ext>`, `annotations/<id>.png`, optional `metadata.csv`
    (id, material, content), possibly holding offline-augmented copies `<id>_aug<N>`.

Both yield the same `Sample`s; `open_reader` detects the form from the root.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from heritage_seg.data.imageio import IMAGE_EXTENSIONS, open_image

PARQUET_GLOBS = ("data/train-*.parquet", "train-*.parquet", "data/*.parquet", "*.parquet")
DEFAULT_SOURCE_PATTERN = r"^(?P<source>.+?)(?:_aug\d+|_tile\d+)*$"


@dataclass(frozen=True)
class RecordInfo:
    """What is known about one image without decoding it."""

    id: str
    source_id: str
    material: str
    content: str


@dataclass
class Sample:
    info: RecordInfo
    image: Image.Image
    mask: Image.Image
    name: str  # where it came from, for error messages


class Reader(Protocol):
    form: str
    root: Path

    def records(self) -> list[RecordInfo]: ...

    def samples(self) -> Iterator[Sample]: ...

    def fingerprint(self) -> str: ...


def source_id_of(sample_id: str, pattern: str = DEFAULT_SOURCE_PATTERN) -> str:
    """`abc_aug2` and `abc_tile7` belong to source image `abc`: folds are built over sources."""
    match = re.match(pattern, sample_id)
    if not match or "source" not in match.groupdict():
        raise ValueError(f"data.source_id_pattern {pattern!r} must match '{sample_id}' with a (?P<source>…) group")
    return match.group("source")


def _files_fingerprint(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class FolderReader:
    form = "folder"

    def __init__(self, root: Path, source_pattern: str = DEFAULT_SOURCE_PATTERN):
        self.root = root
        self.source_pattern = source_pattern
        self.image_dir, self.mask_dir = root / "images", root / "annotations"
        self._images = self._index(self.image_dir, IMAGE_EXTENSIONS)
        self._masks = self._index(self.mask_dir, (".png", ".tif", ".tiff", ".bmp"))
        missing = sorted(set(self._images) - set(self._masks))
        orphans = sorted(set(self._masks) - set(self._images))
        if missing:
            raise ValueError(
                f"{self.mask_dir}: no annotation for image id(s) {missing[:5]}{' …' if len(missing) > 5 else ''}; "
                "every images/<id>.* needs annotations/<id>.png"
            )
        if orphans:
            raise ValueError(f"{self.image_dir}: no image for annotation id(s) {orphans[:5]}")
        if not self._images:
            raise ValueError(f"{self.image_dir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
        self._meta = self._read_metadata(root / "metadata.csv")

    @staticmethod
    def _index(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in extensions:
                if path.stem in index:
                    raise ValueError(f"{folder}: two files for id '{path.stem}': {index[path.stem].name}, {path.name}")
                index[path.stem] = path
        return index

    @staticmethod
    def _read_metadata(path: Path) -> dict[str, dict[str, str]]:
        """metadata.csv as spreadsheets write it: a UTF-8 byte-order mark, `,` or `;` (some locales), spaces
        after the separators, header names in any case."""
        if not path.exists():
            return {}
        text = path.read_text(encoding="utf-8-sig")
        first = text.splitlines()[0] if text.strip() else ""
        delimiter = ";" if first.count(";") > first.count(",") else ","
        reader = csv.reader(text.splitlines(), delimiter=delimiter, skipinitialspace=True)
        rows = [[cell.strip() for cell in row] for row in reader if any(cell.strip() for cell in row)]
        if not rows:
            return {}
        header = [h.lower() for h in rows[0]]
        if "id" not in header:
            raise ValueError(
                f"{path}: needs an 'id' column (and optionally 'material', 'content'); its header is "
                f"{rows[0]} (read with separator '{delimiter}')"
            )
        return {row[header.index("id")]: dict(zip(header, row)) for row in rows[1:]}

    def records(self) -> list[RecordInfo]:
        out = []
        for sample_id in self._images:
            source = source_id_of(sample_id, self.source_pattern)
            meta = self._meta.get(sample_id) or self._meta.get(source) or {}
            out.append(
                RecordInfo(sample_id, source, meta.get("material") or "unknown", meta.get("content") or "unknown")
            )
        return out

    def samples(self) -> Iterator[Sample]:
        for info in self.records():
            image_path, mask_path = self._images[info.id], self._masks[info.id]
            yield Sample(
                info,
                open_image(image_path, str(image_path)),
                open_image(mask_path, str(mask_path), orient=False),
                str(image_path),
            )

    def fingerprint(self) -> str:
        meta = [self.root / "metadata.csv"] if (self.root / "metadata.csv").exists() else []
        return _files_fingerprint(list(self._images.values()) + list(self._masks.values()) + meta, self.root)


class ParquetReader:
    form = "parquet"
    columns = ("id", "image", "annotation", "material", "content")

    def __init__(self, root: Path, shards: list[Path], source_pattern: str = DEFAULT_SOURCE_PATTERN):
        import pyarrow.parquet as pq

        self.root, self.shards, self.source_pattern = root, shards, source_pattern
        self._pq = pq
        for shard in shards:
            try:
                names = set(pq.read_schema(shard).names)
            except Exception as err:  # pyarrow raises several types for a bad file
                raise ValueError(f"{shard}: not a readable parquet file ({err})") from err
            missing = {"id", "image", "annotation"} - names
            if missing:
                raise ValueError(f"{shard}: missing column(s) {sorted(missing)}; expected the ARTeFACT schema")

    def _info(self, row: dict) -> RecordInfo:
        sample_id = str(row["id"])
        return RecordInfo(
            sample_id,
            source_id_of(sample_id, self.source_pattern),
            str(row.get("material") or "unknown"),
            str(row.get("content") or "unknown"),
        )

    def _batches(self, columns: list[str]) -> Iterator[tuple[Path, list[dict]]]:
        for shard in self.shards:
            parquet = self._pq.ParquetFile(shard)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=4, columns=present):
                yield shard, batch.to_pylist()

    def records(self) -> list[RecordInfo]:
        return [self._info(row) for _, rows in self._batches(["id", "material", "content"]) for row in rows]

    def samples(self) -> Iterator[Sample]:
        for shard, rows in self._batches(list(self.columns)):
            for row in rows:
                info = self._info(row)
                name = f"{shard.name}[id={info.id}]"
                yield Sample(
                    info,
                    open_image(self._cell_bytes(row["image"], f"{name}.image"), f"{name}.image"),
                    open_image(
                        self._cell_bytes(row["annotation"], f"{name}.annotation"), f"{name}.annotation", orient=False
                    ),
                    name,
                )

    @staticmethod
    def _cell_bytes(cell, name: str) -> bytes:
        if isinstance(cell, dict) and isinstance(cell.get("bytes"), (bytes, bytearray)):
            return bytes(cell["bytes"])
        if isinstance(cell, (bytes, bytearray)):
            return bytes(cell)
        raise ValueError(f"{name}: expected an image struct {{bytes, path}} with the encoded file, got {type(cell)}")

    def fingerprint(self) -> str:
        return _files_fingerprint(self.shards, self.root)


def open_reader(root: str | Path, source_pattern: str = DEFAULT_SOURCE_PATTERN) -> Reader:
    """Detect the form of an ARTeFACT copy from its root folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"data.root={root}: folder does not exist. Point data.root at an ARTeFACT copy (a folder with "
            "images/ + annotations/, or the hub's parquet shards data/train-*.parquet), fetch the shards with "
            "`python -m heritage_seg.download root=<folder>`, or try `data=sample`."
        )
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return FolderReader(root, source_pattern)
    for pattern in PARQUET_GLOBS:
        shards = sorted(root.glob(pattern))
        if shards:
            return ParquetReader(root, shards, source_pattern)
    raise ValueError(
        f"data.root={root}: neither form of ARTeFACT data found. Expected either images/ and annotations/ "
        "folders (exported form) or parquet shards data/train-*.parquet (Hugging Face form)."
    )
