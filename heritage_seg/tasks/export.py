"""What `python -m heritage_seg.export` does, as a function of its composed config (tests and benchmarks
call it directly). Export a checkpoint:  python -m heritage_seg.export ckpt=…/best.ckpt format=onnx output=model.onnx

Writes the ONNX file (heritage_seg/deploy/onnx.py), checked against PyTorch with onnxruntime on validation
images of the run, and model_card.md beside it (heritage_seg/deploy/model_card.py). The file appears only once the
check has passed; an existing one is replaced only with overwrite=true."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from heritage_seg.core.files import write_file_atomic, write_text_atomic
from heritage_seg.deploy.model_card import model_card
from heritage_seg.deploy.onnx import (
    check_against_pytorch,
    check_batches,
    export_onnx,
    fixed_spatial_size,
    require_onnx,
)
from heritage_seg.runs.folder import MODEL_CARD, run_dir_of
from heritage_seg.runs.rebuild import rebuild_validation_data
from heritage_seg.training.module import load_trained_module

log = logging.getLogger(__name__)
FORMATS = ("onnx",)


def card_path(output: Path) -> Path:
    return output.with_name(MODEL_CARD)


def export(cfg: DictConfig, output: Path) -> dict:
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
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
    module = load_trained_module(ckpt)
    run_cfg, labels = module.run_config, module.labels
    size = module.protocol.image_size
    datamodule = rebuild_validation_data(run_cfg, labels, ckpt, cfg.data.root, None, cfg.data.cache_dir)
    val = datamodule.split.val_idx[: int(cfg.check_images)]
    images = [np.asarray(datamodule.data.images[i]) for i in val]
    batches = check_batches(images, size, dynamic=not fixed_spatial_size(run_cfg.encoder.name))

    graph, check = {}, {}

    def export_and_check(tmp: str) -> None:  # raising here leaves no file (files.write_file_atomic)
        graph.update(export_onnx(module, run_cfg.encoder.name, size, Path(tmp), int(cfg.opset)))
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
        model_card(run_cfg, labels, module.protocol, ckpt, run_dir_of(ckpt), output.name, graph, check),
    )
    log.info("wrote %s and %s", output, card_path(output))
    return {"output": str(output), "model_card": str(card_path(output)), **graph, **check}
