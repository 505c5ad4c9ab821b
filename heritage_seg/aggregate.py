"""Cross-validation summary of a sweep:  python -m heritage_seg.aggregate runs=multirun/2026-11-24/10-00-00

Runs are grouped by every override except `fold` and the bookkeeping ones (heritage_seg/runs/folder.py), so an
encoder sweep and an ablation sweep (loss=…, loss.class_weighting=…) are summarised the same way. Because all
groups share the same folds, the honest comparison is the PAIRED per-fold difference between groups, reported
beside the mean ± std (heritage_seg/study/: runs, statistics, tables and chart).

The entry point only: the work is heritage_seg.tasks.aggregate.aggregate."""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.aggregate import aggregate


@command("aggregate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    runs = cfg.runs
    aggregate(
        list(runs) if isinstance(runs, (list, ListConfig)) else [runs],
        cfg.get("out"),
        cfg.get("baseline"),
        viewer=bool(cfg.get("viewer", True)),
    )


if __name__ == "__main__":
    accept_printed_paths()
    main()
