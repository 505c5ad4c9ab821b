"""The model's damage masks as pre-annotations to correct in an annotation tool (COCO 1.0, RLE masks):
    python -m heritage_seg.preannotate ckpt=…/best.ckpt input=outputs/select/<date>/<time>

The entry point only: the work is heritage_seg.tasks.preannotate.preannotate."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.preannotate import preannotate


@command("preannotate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(str(cfg.output)) if cfg.output else Path(HydraConfig.get().runtime.output_dir)
    preannotate(cfg, out_dir.expanduser().resolve())


if __name__ == "__main__":
    accept_printed_paths()
    main()
