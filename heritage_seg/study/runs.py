"""Finding a study's finished runs: run folders with a metrics.json, grouped by what they trained."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heritage_seg.runs.folder import CONFIG, METRICS, METRICS_TTA, SPLITS
from heritage_seg.runs.records import MetricsRecord, SplitsRecord
from heritage_seg.study.overrides import is_bookkeeping, recorded_overrides


@dataclass
class FinishedRun:
    path: Path
    overrides: tuple[str, ...]  # the run's overrides minus fold and bookkeeping ones: what defines its group
    group: str
    fold: int
    n_folds: int
    encoder: str
    family: str
    metrics: dict[str, Any]
    metrics_tta: dict[str, Any] | None
    val_set: str | None = None  # fingerprint of the validation ids (splits.json); None: not recorded

    @property
    def resolution(self) -> str:
        """Where metrics.json was counted: `native` (each mask's stored size) or `train` (the model's input size,
        also every metrics.json written before native scoring existed)."""
        return str(self.metrics["resolution"])

    @property
    def metrics_train(self) -> dict[str, Any]:
        """The figures at the model's input size (comparable with the seed's table), whatever `resolution` is."""
        return self.metrics["train_resolution"] or self.metrics


def _validation_set(run_dir: Path) -> str | None:
    """Runs are paired only when they were validated on the same images (same split, seed, n_folds, data)."""
    path = run_dir / SPLITS
    if not path.exists():
        return None
    return SplitsRecord.read(path).val_set


def find_runs(paths: Sequence[str | Path]) -> list[FinishedRun]:
    """Every run folder under `paths` (a folder with .hydra/config.yaml) that has a metrics.json."""
    run_dirs: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"runs={path}: no such folder")
        found = [path] if (path / CONFIG).exists() else []
        found += sorted(p.parent.parent for p in path.glob(f"**/{CONFIG}") if p.parent.parent != path)
        run_dirs.extend(found)
    runs, unfinished = [], []
    for run_dir in sorted(set(run_dirs)):
        if not (run_dir / METRICS).exists():
            unfinished.append(run_dir)
            continue
        metrics = MetricsRecord.read(run_dir / METRICS)
        tta_path = run_dir / METRICS_TTA
        overrides = [o for o in recorded_overrides(run_dir) if not is_bookkeeping(o)]
        runs.append(
            FinishedRun(
                path=run_dir,
                overrides=tuple(sorted(overrides)),
                group=",".join(sorted(overrides)) or "(defaults)",
                fold=int(metrics.fold),
                n_folds=int(metrics.n_folds or 0),
                encoder=str(metrics.encoder or "?"),
                family=str(metrics.family or "?"),
                metrics=metrics.to_dict(),
                metrics_tta=MetricsRecord.read(tta_path).to_dict() if tta_path.exists() else None,
                val_set=_validation_set(run_dir),
            )
        )
    if unfinished:
        warnings.warn(
            f"{len(unfinished)} run folder(s) have no metrics.json (failed or still running), "
            f"left out: {', '.join(str(p) for p in unfinished)}",
            stacklevel=2,
        )
    if not runs:
        raise FileNotFoundError(
            f"runs={', '.join(map(str, paths))}: no finished run (a run folder with metrics.json) found"
        )
    return runs
