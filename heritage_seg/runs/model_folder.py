"""The shareable model folder (`python -m heritage_seg.export format=safetensors`): what another institution needs
to map, evaluate, select, pre-annotate and fine-tune, and nothing that can run code when it is read.

    <folder>/config.json        what the weights are: encoder, heads, label map, sizing protocol, normalisation,
                                temperature, the training data and run config, the project's version
    <folder>/model.safetensors  the weights (safetensors: tensors only)
    <folder>/README.md          the model card
    <folder>/splits.json        the training/validation images (evaluate checks its fold against it)

The Hugging Face hub's layout (smp's `save_pretrained` writes config.json + model.safetensors + README.md), read
from a local path only. Every command reads it through `read_checkpoint` (runs/checkpoints.py) as the checkpoint
dict a `.ckpt` gives, so `ckpt=` and `init_from=` take either. Written by hand: smp's `from_pretrained` builds a
bare smp model from the hub, and knows nothing of label maps, protocols or temperatures."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from heritage_seg.core.files import UMASK, write_file_atomic, write_json_atomic, write_text_atomic
from heritage_seg.core.protocol import Protocol
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.pretrained import started_from
from heritage_seg.models.unet import check_encoder_name
from heritage_seg.runs.folder import MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS, SPLITS
from heritage_seg.runs.records import SplitsRecord

# config.json's `heritage_seg.format`: bumped when what the folder holds changes in a way readers must know about
FOLDER_FORMAT = 1
# run config sections that config.json holds at its top (what the weights are); the rest is under `training`
MODEL_KEYS = ("encoder", "heads", "labels")
# the module's keys every folder holds; the loss is not part of a model (fine-tuning builds its own)
REQUIRED = ("heritage_seg", "encoder", "labels", "protocol", "normalisation", "temperature", "training")
# machine-local settings of the run that trained it: meaningless on another machine
LOCAL_KEYS = ("run_dir", "resume")
LOCAL_DATA_KEYS = ("cache_dir", "num_workers", "pin_memory", "preload_to")


def _project_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("heritage_seg")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _val_set(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(sorted(ids)).encode()).hexdigest()[:16]


def describe(checkpoint: Mapping[str, Any], splits: SplitsRecord | None) -> dict[str, Any]:
    """config.json for a (plain) checkpoint dict: the model's keys at the top, the run config under `training`."""
    hp = checkpoint["hyper_parameters"]
    run_config = dict(hp["run_config"])
    encoder = run_config["encoder"]
    state = checkpoint["state_dict"]
    training = {k: v for k, v in run_config.items() if k not in MODEL_KEYS and k not in LOCAL_KEYS}
    training["data"] = {k: v for k, v in dict(run_config["data"]).items() if k not in LOCAL_DATA_KEYS}
    protocol = Protocol.from_record(hp.get("protocol"), run_config["data"]["image_size"])
    data = {
        "root": run_config["data"]["root"],
        "fold": run_config.get("fold"),
        "n_folds": run_config.get("n_folds"),
        "seed": run_config.get("seed"),
        "split": run_config.get("split"),
    }
    if splits is not None:
        data.update(
            train_images=len(splits.train_ids),
            val_images=len(splits.val_ids),
            val_set=_val_set(splits.val_ids),  # aggregate pairs runs validated on the same images by this
        )
    return {
        "heritage_seg": {"format": FOLDER_FORMAT, "version": _project_version()},
        "architecture": "smp.Unet",
        "encoder": encoder,
        "heads": run_config.get("heads"),
        "labels": run_config["labels"],
        "protocol": protocol.to_dict(),
        # on the 0..255 scale of the uint8 input, applied inside the model (also in the weights: pixel_mean/std)
        "normalisation": {
            "pixel_mean": [round(float(v), 6) for v in state["pixel_mean"].flatten()],
            "pixel_std": [round(float(v), 6) for v in state["pixel_std"].flatten()],
        },
        "temperature": float(hp.get("temperature", 1.0)),
        "started_from": started_from(run_config),
        "data": data,
        "class_weights": hp.get("class_weights"),
        "training": training,
    }


def write_model_folder(
    checkpoint: Mapping[str, Any],
    splits: SplitsRecord | None,
    card: str,
    output: Path,
    overwrite: bool,
    check: Callable[[Path], None] | None = None,
) -> None:
    """The folder, built under a temporary name beside `output`, `check`ed there, and renamed into place once
    complete: a reader sees the old folder or the new one, never a half-written one. An existing one is replaced
    only if `overwrite`."""
    from safetensors.torch import save_file

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    old = None
    try:
        # the loss's fitted weights are buffers of the training module, not of the model
        state = {
            k: v.detach().to("cpu").contiguous().clone()
            for k, v in checkpoint["state_dict"].items()
            if not k.startswith(("loss.", "aux_losses."))
        }
        metadata = {"format": "pt", "heritage_seg": str(FOLDER_FORMAT)}
        write_file_atomic(tmp / MODEL_WEIGHTS, lambda file: save_file(state, file, metadata=metadata))
        write_json_atomic(tmp / MODEL_CONFIG, describe(checkpoint, splits))
        write_text_atomic(tmp / MODEL_README, card)
        if splits is not None:
            splits.write(tmp / SPLITS)
        if check is not None:
            check(tmp)
        os.chmod(tmp, 0o777 & ~UMASK)
        if output.exists():
            if not overwrite:
                raise FileExistsError(f"output={output}: exists; pass overwrite=true to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}-old-", dir=output.parent))
            os.replace(output, old / output.name)
        os.replace(tmp, output)
    except BaseException:
        if old is not None and not output.exists():
            os.replace(old / output.name, output)  # the earlier folder back where it was
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class _Refused(ValueError):
    pass


def read_model_folder(path: Path, option: str) -> dict[str, Any]:
    """The checkpoint dict (state_dict, hyper_parameters) of a model folder, every key of its
    config.json checked against the weights before any network is built; a wrong one is named."""
    path = Path(path)
    config_file, weights_file = path / MODEL_CONFIG, path / MODEL_WEIGHTS
    where = f"{option}={path}"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{where}: not a heritage_seg model folder: no {MODEL_CONFIG} (a model folder is what "
            "`python -m heritage_seg.export ckpt=<checkpoint> format=safetensors output=<folder>` writes)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{option}={config_file}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{option}={config_file}: not a JSON object")

    def refuse(key: str, why: str) -> _Refused:
        return _Refused(f"{option}={config_file}: `{key}` {why}")

    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise refuse(missing[0], f"is missing (a model folder's {MODEL_CONFIG} holds {', '.join(REQUIRED)})")
    stamp = config["heritage_seg"] if isinstance(config["heritage_seg"], dict) else {}
    if stamp.get("format") != FOLDER_FORMAT:
        raise refuse(
            "heritage_seg.format",
            f"is {stamp.get('format')}; this version reads {FOLDER_FORMAT}: use the heritage_seg version that wrote "
            f"it ({stamp.get('version', '?')})",
        )
    encoder = config["encoder"]
    if not isinstance(encoder, dict) or not encoder.get("name"):
        raise refuse("encoder.name", "is missing")
    try:
        check_encoder_name(str(encoder["name"]))
    except ValueError as err:
        raise refuse("encoder.name", f"is unknown: {err}") from None
    try:  # a map that is wrong in its values is named by LabelMap itself
        labels = LabelMap.from_config(config["labels"], f"{option}={config_file}: `labels`")
    except (KeyError, TypeError, AttributeError) as err:
        raise refuse("labels", f"is not a label map (no {err})") from None
    training = config["training"]
    if not isinstance(training, dict) or not isinstance(training.get("data"), dict):
        raise refuse("training.data", "is missing (the run config the model was trained with)")
    try:
        protocol = Protocol.from_record(config["protocol"], training["data"].get("image_size", 0))
    except (ValueError, TypeError) as err:
        raise refuse("protocol", f"is not a sizing protocol ({err})") from None
    temperature = config["temperature"]
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise refuse("temperature", f"is {temperature!r}; it must be a number > 0")

    if not weights_file.is_file():
        raise FileNotFoundError(f"{option}={weights_file}: missing (the folder's weights)")
    state = _read_weights(weights_file, option)
    head = _head_rows(state)
    if head is not None and head != labels.num_classes:
        raise refuse(
            "labels",
            f"names {labels.num_classes} classes, but the weights in {MODEL_WEIGHTS} have {head} outputs: "
            f"{MODEL_CONFIG} does not describe these weights",
        )
    for key in ("pixel_mean", "pixel_std"):
        given = torch.tensor(config["normalisation"].get(key, []) if isinstance(config["normalisation"], dict) else [])
        weights = state.get(key)
        if weights is None or given.shape != weights.flatten().shape or not torch.allclose(given, weights.flatten()):
            raise refuse(f"normalisation.{key}", f"does not match the weights' {key} in {MODEL_WEIGHTS}")
    if (protocol.image_size, protocol.resize) != (training["data"].get("image_size"), training["data"].get("resize")):
        raise refuse(
            "protocol",
            f"({protocol.resize}, {protocol.image_size} px) differs from training.data (resize "
            f"{training['data'].get('resize')}, image_size {training['data'].get('image_size')})",
        )
    run_config = {**training, "encoder": encoder, "heads": config.get("heads") or {"name": "single"}}
    run_config["labels"] = config["labels"]
    return {
        "state_dict": state,
        "hyper_parameters": {
            "run_config": run_config,
            "protocol": protocol.to_dict(),
            "class_weights": config.get("class_weights"),
            "temperature": float(temperature),
        },
    }


def _read_weights(path: Path, option: str) -> dict[str, torch.Tensor]:
    """model.safetensors: tensors only, nothing in it can run; a truncated or damaged file is named."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{option}={path}: not a complete safetensors file ({err}); copy the model folder again"
        ) from None


def _head_rows(state: Mapping[str, torch.Tensor]) -> int | None:
    """Output rows of the U-Net's class head (smp: segmentation_head.0 is the convolution)."""
    for key in ("model.segmentation_head.0.weight",):
        if key in state:
            return int(state[key].shape[0])
    return None
