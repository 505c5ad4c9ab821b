"""Train one fold:  python -m heritage_seg.train encoder=mit_b3 fold=1   (see conf/train.yaml).

The entry point only: the work is heritage_seg.tasks.train.train."""

from __future__ import annotations

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.train import train


@command("train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    accept_printed_paths()
    main()
