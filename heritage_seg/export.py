"""Export a checkpoint:
    python -m heritage_seg.export ckpt=…/best.ckpt format=onnx output=model.onnx
    python -m heritage_seg.export ckpt=…/best.ckpt format=safetensors output=<folder>   (the model to share)

The entry point only: the work is heritage_seg.tasks.export.export."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.runs.folder import MODEL_FOLDER, ONNX_MODEL
from heritage_seg.tasks.export import export


@command("export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    default = MODEL_FOLDER if cfg.format == "safetensors" else ONNX_MODEL
    output = Path(str(cfg.output)) if cfg.output else Path(HydraConfig.get().runtime.output_dir) / default
    export(cfg, output.expanduser().resolve())


if __name__ == "__main__":
    accept_printed_paths()
    main()
