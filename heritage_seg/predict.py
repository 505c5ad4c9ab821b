"""Map damage on new full-resolution scans:
    python -m heritage_seg.predict ckpt=…/best.ckpt input=scan.tif
    python -m heritage_seg.predict ckpt=…/best.ckpt input=folder/ tta=true

Per image: <name>_mask.png (class ids at full resolution, palette PNG), <name>_overlay.jpg, <name>_confidence.png
and <name>_report.json; report.csv and report.html (every scan on one page) for the whole run. One unreadable
file is reported and skipped.

The entry point only: the work is heritage_seg.tasks.predict.predict."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.predict import predict


@command("predict")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(str(cfg.output)) if cfg.output else Path(HydraConfig.get().runtime.output_dir)
    result = predict(cfg, out_dir.expanduser().resolve())
    if result["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    accept_printed_paths()
    main()
