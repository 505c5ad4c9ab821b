"""Claiming a run folder: never write into one that holds finished results; record the config once claimed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def claim_run_dir(run_dir: Path, cfg: DictConfig, finished_markers: Sequence[str]) -> None:
    """Refuse a folder holding any of `finished_markers` (globs), then write `.hydra/` into it.

    Hydra would write `.hydra/` before the task starts and so overwrite a finished run's record; the primary
    configs turn that off (hydra.output_subdir: null) and the same three files are written here, after the check.
    """
    existing = [p for pattern in finished_markers for p in sorted(run_dir.glob(pattern))]
    if existing:
        raise FileExistsError(
            f"hydra.run.dir={run_dir}: already holds results ({existing[0].relative_to(run_dir)}); they are left "
            "untouched. Choose another hydra.run.dir (or leave it out for a fresh timestamped folder)."
        )
    record = run_dir / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, record / "config.yaml")
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        OmegaConf.save(hydra_cfg, record / "hydra.yaml")
        OmegaConf.save(hydra_cfg.overrides.task, record / "overrides.yaml")
