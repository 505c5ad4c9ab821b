"""Writing outputs so that a crash never leaves a half-written file or folder behind (temp name + rename).

The one home for atomic writes: text/JSON, pictures (PNG/JPEG), matplotlib figures, and whole folders (the data
cache, the generated sample set)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# tempfile creates private files (0600) and folders (0700); a result must get the permissions any other file
# written by the user gets (0644 / 0755 under the usual umask 022), or colleagues sharing a cluster's project
# folder or data cache cannot read it. Read once: os.umask can only be read by setting it.
UMASK = _umask()


def write_file_atomic(path: Path, save: Callable[[str], None]) -> None:
    """`save(tmp)` writes a temporary file in the same folder, which is then renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_file_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: Path, payload: dict) -> None:
    """JSON with NaN refused: undefined metrics must be written as null by the caller."""
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=False))


def save_image(path: Path, image: Image.Image | np.ndarray) -> None:
    """PNG or JPEG (by suffix), written atomically."""
    path = Path(path)
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
    if path.suffix.lower() not in formats:
        raise ValueError(f"{path}: pictures are written as {', '.join(formats)}")
    fmt = formats[path.suffix.lower()]
    # zlib level 1, not PIL's 6: 3-5x faster on a 4096² class map, the file ~15 % larger (benchmarks/RESULTS.md)
    options = {"quality": 90} if fmt == "JPEG" else {"compress_level": 1}
    write_file_atomic(path, lambda tmp: img.save(tmp, format=fmt, **options))


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Build a folder under a temporary name beside `target`; when the block ends without error it is renamed to
    `target`, so readers see no folder or a complete one. An empty `target` is replaced. If another process put
    a non-empty `target` in place first (two runs preparing the same cache), that one is kept and ours dropped;
    the caller checks it is what it wanted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target.is_dir() and any(target.iterdir())):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
