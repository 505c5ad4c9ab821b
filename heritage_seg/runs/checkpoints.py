"""Checkpoint files: written fast and atomically while training; a trained model, its label map and its run
config rebuilt from one alone."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from heritage_seg.core.files import write_file_atomic
from heritage_seg.runs.model_folder import read_model_folder

# Bumped when what a checkpoint holds changes in a way that later tools must know about.
CHECKPOINT_FORMAT = 1


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


def _load_plain(path: Path, option: str, **kwargs) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, so a file from elsewhere cannot run
    code while it is read (issue 37). A file holding pickled objects is refused with one line naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{option}={path}: refused: it holds pickled Python objects, which could run code on this machine when "
            "loaded; heritage_seg reads only checkpoints of tensors and plain values and model folders (what it "
            "writes itself). From elsewhere: ask for the model folder `python -m heritage_seg.export "
            "format=safetensors` writes. Your own, made by an earlier version, and trusted: convert it once with "
            f"python -m heritage_seg.export ckpt={path} format=safetensors trust=true output=<folder>"
        ) from None


def _plain(value: Any, key: str) -> Any:
    """A trusted old checkpoint's hyper-parameters as plain containers (earlier versions pickled OmegaConf nodes
    and Lightning's AttributeDict into them)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool, torch.Tensor)):
        return value
    raise ValueError(f"{key}: a {type(value).__name__} object, which this version cannot convert")


def _load_trusted(path: Path, option: str) -> dict[str, Any]:
    """`trust=true` (export only): the one place a checkpoint is unpickled, for a file its owner vouches for; what
    comes back is only its weights and plain hyper-parameters."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        return checkpoint
    try:
        hyper_parameters = _plain(checkpoint.get("hyper_parameters") or {}, "hyper_parameters")
    except ValueError as err:
        raise ValueError(f"{option}={path}: {err}") from None
    return {
        "state_dict": dict(checkpoint["state_dict"]),
        "hyper_parameters": hyper_parameters,
        "heritage_seg": _plain(checkpoint.get("heritage_seg") or {}, "heritage_seg"),
    }


def read_checkpoint(path: str | Path, option: str = "ckpt", trust: bool = False) -> dict[str, Any]:
    """A heritage_seg checkpoint (a .ckpt file or a model folder, runs/model_folder.py), read without running any
    code it might carry; `option` is the setting that named it (ckpt, init_from, resume), for the messages.
    `trust`: a .ckpt of pickled objects is unpickled (export trust=true, converting the user's own old file)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return {**read_model_folder(path, option), "heritage_seg": {"format": CHECKPOINT_FORMAT}}
    if not path.is_file():
        raise FileNotFoundError(f"{option}={path}: file not found")
    try:
        checkpoint = _load_trusted(path, option) if trust else _load_plain(path, option, mmap=True)
    except ValueError:
        raise
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{option}={path}: not a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{option}={path}: not a Lightning checkpoint (no state_dict)")
    fmt = (checkpoint.get("heritage_seg") or {}).get("format")
    run_config = (checkpoint.get("hyper_parameters") or {}).get("run_config")
    if fmt != CHECKPOINT_FORMAT or run_config is None:
        raise ValueError(
            f"{option}={path}: not a heritage_seg checkpoint of a compatible version (format {fmt}, this version "
            f"reads {CHECKPOINT_FORMAT}); use it with the heritage_seg version that trained it"
        )
    return checkpoint


def write_with_temperature(source: Path, target: Path, temperature: float) -> None:
    """A copy of checkpoint `source` (a .ckpt or a model folder) at `target` whose model divides its logits by
    `temperature` (the module's `temperature` hyper-parameter): what `evaluate calibrate=true` hands to predict.
    Written atomically, as a .ckpt."""
    checkpoint = read_checkpoint(source)
    checkpoint["hyper_parameters"]["temperature"] = float(temperature)
    write_file_atomic(target, lambda tmp: torch.save(checkpoint, tmp))
