"""The shareable model folder (`python -m heritage_seg.export format=safetensors`): what another institution needs
to map, evaluate, select, pre-annotate and fine-tune, and nothing that can run code when it is read.

    <folder>/config.json        what the weights are: encoder, heads, label map, sizing protocol, normalisation,
                                temperature, the training data and run config, the project's version
    <folder>/model.safetensors  the weights (safetensors: tensors only)
    <folder>/README.md          the model card
    <folder>/splits.json        the training/validation images (evaluate checks its fold against it)

The Hugging Face hub's layout (smp's `save_pretrained` writes config.json + model.safetensors + README.md), read
from a local path only. Written here; read by `read_checkpoint` (models/stored.py) as the checkpoint dict a
`.ckpt` gives, so `ckpt=` and `init_from=` take either. Written by hand: smp's `from_pretrained` builds a
bare smp model from the hub, and knows nothing of label maps, protocols or temperatures."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from heritage_seg.core.files import UMASK, write_file_atomic, write_json_atomic, write_text_atomic
from heritage_seg.core.protocol import Protocol
from heritage_seg.models.pretrained import started_from
from heritage_seg.models.stored import FOLDER_FORMAT, MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS
from heritage_seg.models.unet import encoder_name
from heritage_seg.runs.folder import SPLITS
from heritage_seg.runs.records import SplitsRecord

# run config sections that config.json holds at its top (what the weights are); the rest is under `training`
MODEL_KEYS = ("encoder", "heads", "labels")
# machine-local settings of the run that trained it: meaningless on another machine
LOCAL_KEYS = ("run_dir", "resume")
LOCAL_DATA_KEYS = ("cache_dir", "num_workers", "pin_memory", "preload_to")


def _project_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("heritage_seg")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def describe(checkpoint: Mapping[str, Any], splits: SplitsRecord | None) -> dict[str, Any]:
    """config.json for a (plain) checkpoint dict: the model's keys at the top, the run config under `training`."""
    hp = checkpoint["hyper_parameters"]
    run_config = dict(hp["run_config"])
    # the weights' encoder by its smp name (a run config may say encoder.name=resnet50 with source: timm)
    encoder = {**dict(run_config["encoder"]), "name": encoder_name(run_config["encoder"])}
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
            val_set=splits.val_set,  # as aggregate pairs runs validated on the same images
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
    """The folder of `checkpoint` (a TrainedModel's state_dict, the network alone, and its hyper-parameters),
    built under a temporary name beside `output`, `check`ed there, and renamed into place once complete: a reader
    sees the old folder or the new one, never a half-written one. An existing one is replaced only if
    `overwrite`."""
    from safetensors.torch import save_file

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    old = None
    try:
        # safetensors takes contiguous tensors that share no memory
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in checkpoint["state_dict"].items()}
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
