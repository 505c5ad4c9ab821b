"""The datamodule a run config describes: its `data` section instantiated with the run's fold, n_folds, seed and
split. One constructor for training, pre-training and the rebuilt validation data of evaluate and export."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from heritage_seg.data.folds import DEFAULT_SPLIT
from heritage_seg.data.labels import LabelMap


def build_datamodule(run_cfg: DictConfig, labels: LabelMap, data_cfg: DictConfig | None = None, augment=None):
    """The run's datamodule (its fold, n_folds, seed, split), prepared; `data_cfg` overrides the run's data
    section (evaluate with a moved data root)."""
    # partial: the LabelMap object must not pass through OmegaConf
    datamodule = instantiate(run_cfg.data if data_cfg is None else data_cfg, _partial_=True)(
        labels=labels,
        fold=run_cfg.fold,
        n_folds=run_cfg.n_folds,
        seed=run_cfg.seed,
        augment=augment,
        split=run_cfg.get("split", DEFAULT_SPLIT),
    )
    datamodule.prepare_data()
    return datamodule
