"""A user's own damage data: their own label map file (other classes, other raw values), no package edits.

python -m heritage_seg.train --config-dir my_conf labels=my_labels data.root=…
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.data.sample import generate_sample
from tests.conftest import REPO, compose_config

MY_LABELS = """\
clean: Intact
ignore_index: 255
ignore_raw: [0]
classes:
  - {name: Intact, raw: 10,  color: "#101010"}
  - {name: Crack,  raw: 200, color: "#FF0000"}
"""


@pytest.mark.slow
def test_training_evaluation_and_prediction_follow_a_two_class_label_map_from_the_users_config_dir(tmp_path):
    conf = tmp_path / "my_conf"
    (conf / "labels").mkdir(parents=True)
    (conf / "labels" / "my_labels.yaml").write_text(MY_LABELS)
    labels = LabelMap.from_config(OmegaConf.load(conf / "labels" / "my_labels.yaml"))
    data = generate_sample(
        tmp_path / "collection",
        labels,
        num_images=18,
        num_augmented=0,
        profile="thin",
        damage="Crack",
        image_px=64,
        coverage=0.03,
    )
    raw = np.unique(np.concatenate([np.unique(np.asarray(Image.open(p))) for p in (data / "annotations").iterdir()]))
    assert set(raw) == {10, 200}, "the collection is stored in the user's own raw values"

    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "heritage_seg.train",
            "--config-dir",
            str(conf),
            "labels=my_labels",
            f"data.root={data}",
            "data.image_size=64",
            "data.batch_size=4",
            "encoder.weights=null",
            "trainer.max_epochs=2",
            "callbacks.progress_bar.refresh_rate=0",
            f"hydra.run.dir={run}",
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    weights = json.loads((run / "class_weights.json").read_text())
    assert weights["classes"] == ["Intact", "Crack"] and len(weights["weights"]) == 2
    assert weights["weights"][1] > weights["weights"][0], "the rare class gets the larger weight"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classes"] == ["Intact", "Crack"] and list(metrics["per_class"]) == ["Intact", "Crack"]
    assert np.asarray(metrics["confusion_matrix"]).shape == (2, 2)

    from heritage_seg.tasks.evaluate import evaluate
    from heritage_seg.tasks.predict import predict

    ckpt = run / "checkpoints" / "best.ckpt"
    evaluated = evaluate(compose_config([f"ckpt={ckpt}"], config_name="evaluate"), tmp_path / "eval")
    assert evaluated["classes"] == ["Intact", "Crack"]
    assert evaluated["confusion_matrix"] == metrics["confusion_matrix"], "evaluate rebuilds the same fold and map"

    scan = tmp_path / "scan.png"
    Image.open(data / "images" / "sample_000.png").resize((150, 100)).save(scan)
    out = tmp_path / "pred"
    predict(compose_config([f"ckpt={ckpt}", f"input={scan}"], config_name="predict"), out)
    report = json.loads((out / "scan_report.json").read_text())
    assert report["clean_class"] == "Intact" and list(report["damage"]) == ["Crack"]
    mask = np.asarray(Image.open(out / "scan_mask.png"))
    assert set(np.unique(mask)) <= {0, 1}
    assert report["clean"]["pixels"] == (mask == 0).sum() and report["damage"]["Crack"]["pixels"] == (mask == 1).sum()
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [(r["class"], r["kind"]) for r in rows] == [("Intact", "clean"), ("Crack", "damage")]


def test_label_map_mistakes_are_named(labels):
    base = OmegaConf.create(MY_LABELS)
    for change, message in (
        (dict(clean="Whole"), r"`clean: Whole` must name the class that means no damage"),
        (dict(clean=None), r"`clean: <missing>`"),
        (dict(classes=[{"name": "Intact", "raw": 10, "color": "#000000"}]), "at least 2 classes"),
        (
            dict(
                classes=[{"name": "A", "raw": 1, "color": "#000000"}, {"name": "A", "raw": 2, "color": "#000000"}],
                clean="A",
            ),
            "unique",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            LabelMap.from_config(OmegaConf.merge(base, change))
    assert labels.clean_name == "Clean" and labels.clean_index == 0  # the ARTeFACT map names its clean class
    legacy = OmegaConf.load(REPO / "conf" / "labels" / "artefact.yaml")
    del legacy["clean"]  # checkpoints written before `clean` existed
    assert LabelMap.from_config(legacy).clean_name == "Clean"


def test_sample_data_refuses_a_map_without_the_classes_it_paints(tmp_path):
    labels = LabelMap.from_config(OmegaConf.create(MY_LABELS))
    with pytest.raises(ValueError, match=r"data.sample \(profile mixed\) paints .*Cracks.*data.sample.damage"):
        generate_sample(tmp_path / "s", labels)
    assert not (tmp_path / "s").exists()
