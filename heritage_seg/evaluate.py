"""Evaluate a checkpoint:  python -m heritage_seg.evaluate ckpt=outputs/…/checkpoints/best.ckpt tta=true

Rebuilds the model and the validation fold of the run that made the checkpoint, evaluates it at dataset
level, and writes metrics.json, the pictures and the prediction masks into its own run folder.

The entry point only: the work is heritage_seg.tasks.evaluate.evaluate."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.evaluate import evaluate


@command("evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    return evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))["miou"]


if __name__ == "__main__":
    accept_printed_paths()
    main()
