"""A trained model as it is stored, read without running anything it might carry: a `.ckpt` (a Lightning
checkpoint, read with torch's weights_only=True) or a model folder (config.json + model.safetensors, what
`export format=safetensors` writes: heritage_seg/runs/model_folder.py). Both come back as the same plain
checkpoint dict (state_dict, hyper_parameters), from which models/trained.py builds the model."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.unet import encoder_name

# Bumped when what a checkpoint holds changes in a way that later tools must know about.
CHECKPOINT_FORMAT = 1
# config.json's `heritage_seg.format`: bumped when what a model folder holds changes in a way readers must know
FOLDER_FORMAT = 1
# A model folder's files (the Hugging Face hub's names)
MODEL_CONFIG = "config.json"  # what the weights are
MODEL_WEIGHTS = "model.safetensors"  # the weights
MODEL_README = "README.md"  # the model card
# the keys every model folder's config.json holds
REQUIRED = ("heritage_seg", "encoder", "labels", "protocol", "normalisation", "temperature", "training")


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

    def refuse(key: str, why: str) -> ValueError:
        return ValueError(f"{option}={config_file}: `{key}` {why}")

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
        encoder_name(encoder)
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
    head = state.get("model.segmentation_head.0.weight")
    return None if head is None else int(head.shape[0])
