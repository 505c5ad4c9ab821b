"""Learning-rate range test:  python -m heritage_seg.lr_find encoder=mit_b3 [any training override]

Runs Lightning's `Tuner.lr_find` on the training fold of the composed training config and writes the
loss-vs-LR plot (`lr_find.png`) and the suggestion (`lr_find.json`) into its run folder, then prints the
override to use. `optim.lr` sets AdamW's lr and OneCycle's max_lr together.

The entry point only: the work is heritage_seg.tasks.lr_find.lr_find."""

from __future__ import annotations

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.lr_find import lr_find


@command("lr_find")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    return lr_find(cfg)


if __name__ == "__main__":
    accept_printed_paths()
    main()
