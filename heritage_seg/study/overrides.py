"""What a run's recorded overrides say about the experiment: those that only say where or how it ran
(bookkeeping: data.root, resume, fold, hydra.*) are left out when runs are grouped into rows."""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.configs import compose
from heritage_seg.runs.folder import OVERRIDES


def recorded_overrides(run_dir: Path) -> list[str]:
    path = run_dir / OVERRIDES
    return [str(o) for o in OmegaConf.load(path)] if path.exists() else []


@functools.lru_cache(maxsize=1)
def default_train_config() -> tuple[dict[str, str], DictConfig]:
    """The training config as composed with no overrides: its group choices (loss=dice_focal …) and values."""
    cfg = compose("train", overrides=["run_dir=."], return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices), cfg


def bookkeeping_keys() -> frozenset[str]:
    """Overrides that say where or how a run ran, not what it trained: the training config's own
    `hydra.job.config.override_dirname.exclude_keys` (one list, for sweep folder names and for aggregate's
    grouping), plus `fold` (what groups are made of) and `run_dir`."""
    _, cfg = default_train_config()
    return frozenset(cfg.hydra.job.config.override_dirname.exclude_keys) | {"fold", "run_dir"}


def is_bookkeeping(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return key in bookkeeping_keys() or key.startswith(("hydra.", "hydra/"))
