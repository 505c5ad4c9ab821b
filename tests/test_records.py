"""Run records are written and read through heritage_seg.runs.records: what a run writes reads back whole, a
misspelt key cannot be written, and files written by earlier versions still read."""

from __future__ import annotations

import json

import pytest

from heritage_seg.runs.folder import CLASS_WEIGHTS, FINISHED, METRICS, METRICS_TTA, SPLITS
from heritage_seg.runs.records import (
    ClassWeightsRecord,
    FinishedRecord,
    MetricsRecord,
    SplitsRecord,
    read_finished,
)


def test_every_record_a_training_run_writes_reads_back_whole(trained_run):
    for record, name in (
        (SplitsRecord, SPLITS),
        (ClassWeightsRecord, CLASS_WEIGHTS),
        (FinishedRecord, FINISHED),
        (MetricsRecord, METRICS),
        (MetricsRecord, METRICS_TTA),
    ):
        written = json.loads((trained_run / name).read_text())
        read = record.read(trained_run / name)
        assert read.extra == {}, f"{name}: keys the record does not know: {sorted(read.extra)}"
        assert read.to_dict() == written, name
    metrics = MetricsRecord.read(trained_run / METRICS)
    assert metrics.resolution == "native" and metrics.train_resolution["miou_gt"] is not None
    assert read_finished(trained_run).reason == "max_epochs reached"


def test_a_misspelt_key_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(KeyError, match=r"unknown key\(s\) \['best_scor'\]"):
        FinishedRecord.from_dict({"reason": "early stopping", "best_scor": 0.5}, strict=True)
    with pytest.raises(ValueError, match="FinishedRecord: reason missing"):
        FinishedRecord.from_dict({"epochs": 3})
    assert not list(tmp_path.iterdir())


def test_a_metrics_json_of_an_earlier_version_still_reads(tmp_path):
    """As written before native scoring, miou_gt, the class list and the protocol keys existed (issue 9's format),
    with a key this version never wrote."""
    old = {
        "miou": 0.25,
        "pixel_accuracy": 0.9,
        "mean_dice": 0.4,
        "fold": 1,
        "n_folds": 3,
        "encoder": "mit_b3",
        "per_class": {"Clean": {"iou": 0.5}, "Cracks": {"iou": 0.0}, "Dust": {"iou": None}},
        "confusion_matrix": [[5, 5, 0], [0, 0, 0], [0, 0, 0]],
        "tta": False,
        "old_key": "kept",
    }
    (tmp_path / METRICS).write_text(json.dumps(old))
    metrics = MetricsRecord.read(tmp_path / METRICS)
    assert metrics.miou_gt == pytest.approx(0.5)  # recomputed: Clean is the only class in the truth
    assert metrics.classes == ["Clean", "Cracks", "Dust"] and metrics.resolution == "train"
    assert metrics.resize == "squash" and metrics.split == "source" and metrics.extra == {"old_key": "kept"}
    finished = read_finished(tmp_path)  # no finished.json yet: metrics.json marked a finished run then
    assert finished.reason == "metrics.json present" and finished.best_score == pytest.approx(0.5)


def test_a_splits_json_without_the_keys_added_later_still_reads(tmp_path):
    (tmp_path / SPLITS).write_text(
        json.dumps({"fold": 0, "n_folds": 3, "seed": 42, "train_ids": ["a", "b"], "val_ids": ["c"]})
    )
    splits = SplitsRecord.read(tmp_path)
    assert (splits.val_ids, splits.split, splits.resize, splits.held_out) == (["c"], "source", "squash", None)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not a readable splits.json"):
        SplitsRecord.read(tmp_path / "broken.json")
