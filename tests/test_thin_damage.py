"""The hard case real photographs showed: one thin damage class (~1 % of the pixels), every other class absent.

A short real training on such data (the 16-class ARTeFACT map, the default loss and selection rule) must keep
a best.ckpt that finds the thin class; with the seed's strict selection rule and Dice over all 16 classes it
kept the model that predicts only Clean.
"""

from __future__ import annotations

import json

import pytest

from heritage_seg.tasks.train import train
from tests.conftest import compose_config


def thin_overrides(tmp_path, *extra):
    return [
        "experiment=sample",
        "data.sample.profile=thin",
        "data.sample.num_images=36",
        "data.sample.num_augmented=0",
        "data.sample.image_px=64",
        "data.image_size=64",
        "data.batch_size=4",
        f"data.root={tmp_path / 'thin'}",
        f"run_dir={tmp_path / 'run'}",
        "trainer.max_epochs=8",
        "callbacks.final_validation_report.tta=false",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        *extra,
    ]


@pytest.mark.slow
def test_a_short_training_on_thin_damage_keeps_a_best_checkpoint_that_finds_it(tmp_path):
    train(compose_config(thin_overrides(tmp_path)))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    present = {name for name, row in metrics["per_class"].items() if row["gt_pixels"]}
    assert present == {"Clean", "Cracks"}, "the validation truth holds the clean class and the thin one only"
    assert metrics["per_class"]["Cracks"]["iou"] > 0.05, "best.ckpt must find the thin class"
    finished = json.loads((tmp_path / "run" / "finished.json").read_text())
    assert finished["monitor"] == "val/mIoU_gt" and finished["best_score"] == pytest.approx(
        metrics["miou_gt"], abs=1e-5
    )
