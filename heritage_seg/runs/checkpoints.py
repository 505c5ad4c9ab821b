"""Checkpoint files written: fast and atomically while training, resumed from without unpickling, and a
calibrated copy. Reading one: heritage_seg.models.stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from heritage_seg.core.files import write_file_atomic
from heritage_seg.models.stored import read_checkpoint


class LocalAtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, but a local checkpoint is saved straight into a temporary file beside it
    and renamed over it (heritage_seg.core.files): as atomic as Lightning's own `_atomic_save`, which serialises the
    whole checkpoint into an in-memory buffer first and then writes that buffer through fsspec — a second copy of
    a 370-540 MB checkpoint in RAM, and 2.5-5x slower on the machines measured (benchmarks/RESULTS.md, "GPU
    path"), paid after every epoch. Other file systems (s3://, ...) keep Lightning's way."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_file_atomic(Path(path), lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None):
        """Lightning's resume (`ckpt_path`) reads with weights_only=True whatever it is asked: no pickled object
        of a checkpoint is ever run (issue 37). Lightning's own map_location stays the default."""
        where = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True, **where)


def write_with_temperature(source: Path, target: Path, temperature: float) -> None:
    """A copy of checkpoint `source` (a .ckpt or a model folder) at `target` whose model divides its logits by
    `temperature` (the module's `temperature` hyper-parameter): what `evaluate calibrate=true` hands to predict.
    Written atomically, as a .ckpt."""
    checkpoint = read_checkpoint(source)
    checkpoint["hyper_parameters"]["temperature"] = float(temperature)
    write_file_atomic(target, lambda tmp: torch.save(checkpoint, tmp))
