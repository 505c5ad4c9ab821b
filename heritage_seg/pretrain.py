"""Self-supervised pre-training on images alone:  python -m heritage_seg.pretrain data.root=<folder> encoder=convnext

Masked-image modelling through the U-Net (encoder and decoder) on scans without annotations; writes
pretrained.pt (pass it on as encoder.weights=<run>/pretrained.pt), pretrained.json and reconstruction pictures.

The entry point only: the work is heritage_seg.tasks.pretrain.pretrain."""

from __future__ import annotations

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.pretrain import pretrain


@command("pretrain")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    pretrain(cfg)


if __name__ == "__main__":
    accept_printed_paths()
    main()
