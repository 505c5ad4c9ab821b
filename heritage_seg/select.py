"""Which scans to annotate next:
    python -m heritage_seg.select ckpt=…/best.ckpt input=<folder of unannotated scans> budget=20

Ranks the scans by an acquisition rule that favours uncertain and varied scans, skips those already annotated,
and writes selection.csv and selection.html.

The entry point only: the work is heritage_seg.tasks.select.select."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.select import select


@command("select")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(str(cfg.output)) if cfg.output else Path(HydraConfig.get().runtime.output_dir)
    select(cfg, out_dir.expanduser().resolve())


if __name__ == "__main__":
    accept_printed_paths()
    main()
