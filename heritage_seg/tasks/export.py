"""What `python -m heritage_seg.export` does, as a function of its composed config (tests and benchmarks
call it directly). Export a checkpoint:
    python -m heritage_seg.export ckpt=…/best.ckpt format=onnx output=model.onnx
    python -m heritage_seg.export ckpt=…/best.ckpt format=safetensors output=<folder>

onnx: the ONNX file (heritage_seg/deploy/onnx.py), checked against PyTorch with onnxruntime on validation
images of the run, and model_card.md beside it (heritage_seg/deploy/model_card.py). safetensors: the shareable
model folder (heritage_seg/runs/model_folder.py: config.json, model.safetensors, README.md, splits.json), read
back and checked against the checkpoint. Either appears only once its check has passed; an existing one is
replaced only with overwrite=true. trust=true (safetensors only) converts the user's own pickled checkpoint of an
earlier version: the one place the project unpickles a file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from heritage_seg.core.cli import override, shown_path
from heritage_seg.core.configs import first_difference
from heritage_seg.core.files import write_file_atomic, write_text_atomic
from heritage_seg.deploy.model_card import model_card
from heritage_seg.deploy.onnx import (
    check_against_pytorch,
    check_batches,
    export_onnx,
    fixed_spatial_size,
    require_onnx,
)
from heritage_seg.models.stored import read_checkpoint
from heritage_seg.models.trained import load_model, model_from_checkpoint
from heritage_seg.models.unet import encoder_name
from heritage_seg.runs.folder import MODEL_CARD, SPLITS, run_dir_of
from heritage_seg.runs.identity import SAME_VALIDATION_SET
from heritage_seg.runs.model_folder import write_model_folder
from heritage_seg.runs.rebuild import rebuild_validation_data
from heritage_seg.runs.records import SplitsRecord

log = logging.getLogger(__name__)
FORMATS = ("onnx", "safetensors")
# what a model folder must give back as the checkpoint had it (its machine-local settings are left out)
SAME_MODEL = (*SAME_VALIDATION_SET, "encoder", "heads", "data.root", "augment", "loss", "optim")


def card_path(output: Path) -> Path:
    return output.with_name(MODEL_CARD)


def export(cfg: DictConfig, output: Path) -> dict:
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    if cfg.trust and cfg.format != "safetensors":
        raise ValueError(
            "trust=true: only with format=safetensors (it converts your own trusted checkpoint into a model folder)"
        )
    if cfg.format == "safetensors":
        return export_folder(cfg, output)
    if output.suffix != ".onnx":
        raise ValueError(f"output={output}: name the file <name>.onnx")
    require_onnx()  # a missing extra fails before anything is read
    for existing in (output, card_path(output)):
        if existing.exists() and not cfg.overwrite:
            raise FileExistsError(
                f"output={output}: {existing} exists; pass overwrite=true to replace it, or choose "
                "another output=<file>.onnx"
            )
    ckpt = Path(str(cfg.ckpt)).expanduser().resolve()
    module = load_model(ckpt)
    run_cfg, labels = module.run_config, module.labels
    size = module.protocol.image_size
    datamodule = rebuild_validation_data(run_cfg, labels, ckpt, cfg.data.root, None, cfg.data.cache_dir)
    val = datamodule.split.val_idx[: int(cfg.check_images)]
    images = [np.asarray(datamodule.data.images[i]) for i in val]
    batches = check_batches(images, size, dynamic=not fixed_spatial_size(encoder_name(run_cfg.encoder)))

    graph, check = {}, {}

    def export_and_check(tmp: str) -> None:  # raising here leaves no file (files.write_file_atomic)
        graph.update(export_onnx(module, encoder_name(run_cfg.encoder), size, Path(tmp), int(cfg.opset)))
        check.update(check_against_pytorch(Path(tmp), module, batches))
        print(
            f"onnxruntime vs PyTorch on {check['images']} validation crops ({check['pixels']:,} pixels): max abs "
            f"logit difference {check['max_abs_logit_difference']:.3e}, argmax agreement "
            f"{100 * check['argmax_agreement']:.3f} %"
        )
        if check["argmax_agreement"] < float(cfg.min_argmax_agreement):
            raise ValueError(
                f"ckpt={ckpt}: the ONNX graph agrees with PyTorch on only "
                f"{100 * check['argmax_agreement']:.3f} % of pixels (< min_argmax_agreement="
                f"{cfg.min_argmax_agreement}); nothing written. Try another opset="
            )

    write_file_atomic(output, export_and_check)
    write_text_atomic(
        card_path(output),
        model_card(
            run_cfg,
            labels,
            module.protocol,
            ckpt,
            run_dir_of(ckpt),
            {"format": "onnx", "file": output.name, "graph": graph, "check": check},
        ),
    )
    log.info("wrote %s and %s", output, card_path(output))
    return {"output": str(output), "model_card": str(card_path(output)), **graph, **check}


def export_folder(cfg: DictConfig, output: Path) -> dict:
    """format=safetensors: the model folder, written under a temporary name, read back through the loader every
    command uses and compared tensor by tensor with the checkpoint before it is renamed into place."""
    if output.suffix in (".onnx", ".ckpt", ".safetensors", ".pt", ".json"):
        raise ValueError(f"output={output}: format=safetensors writes a folder; name a folder, e.g. output=my_model")
    if output.exists() and not cfg.overwrite:
        raise FileExistsError(f"output={output}: exists; pass overwrite=true to replace it, or choose another output=")
    ckpt = Path(str(cfg.ckpt)).expanduser().resolve()
    if output == ckpt:
        raise ValueError(f"output={output}: is the model folder being exported; choose another output=")
    checkpoint = read_checkpoint(ckpt, "ckpt", trust=bool(cfg.trust))
    module = model_from_checkpoint(checkpoint, f"ckpt={ckpt}")  # the weights must fit the config they come with
    state = module.state_dict()  # the network alone: a TrainedModel has no loss or metrics
    hyper_parameters = {k: checkpoint["hyper_parameters"][k] for k in ("run_config", "protocol", "class_weights")}
    hyper_parameters["temperature"] = module.temperature
    run_dir = run_dir_of(ckpt)
    splits = SplitsRecord.read(run_dir / SPLITS) if (run_dir / SPLITS).is_file() else None
    card = model_card(
        module.run_config,
        module.labels,
        module.protocol,
        ckpt,
        run_dir,
        {
            "format": "safetensors",
            "folder": output.name,
            "splits": splits is not None,
            # the card's commands, pasteable as written (quoted where the name needs it)
            "ckpt": override("ckpt", output.name),
            "init_from": override("init_from", output.name),
        },
        module.temperature,
    )

    def check(folder: Path) -> None:  # raising here leaves no folder
        loaded = load_model(folder, "output")
        theirs = loaded.state_dict()
        different = [k for k, v in state.items() if k not in theirs or not torch.equal(v, theirs[k])]
        config = first_difference(module.run_config, loaded.run_config, SAME_MODEL)
        if different or config or loaded.protocol != module.protocol or loaded.temperature != module.temperature:
            raise RuntimeError(
                f"output={output}: the folder does not read back as the checkpoint (tensors {different[:3]}, "
                f"config {config}); nothing written"
            )

    write_model_folder(
        {"state_dict": state, "hyper_parameters": hyper_parameters}, splits, card, output, bool(cfg.overwrite), check
    )
    log.info("wrote the model folder %s (%d tensors)", output, len(state))
    shown = shown_path(output)
    print(
        f"model folder {output}: send the whole folder; {override('ckpt', shown)} and "
        f"{override('init_from', shown)} take it"
    )
    return {"output": str(output), "tensors": len(state), "trusted": bool(cfg.trust)}
