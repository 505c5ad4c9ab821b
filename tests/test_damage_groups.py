"""Damage vs clean and coarse groups (issue 28): the `binary` and `coarse` blocks of metrics.json, and the label
map's `groups:` section (refused clearly when wrong)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from heritage_seg.data.labels import LabelMap
from heritage_seg.evaluation.metrics import count_confusion
from heritage_seg.evaluation.scoring import metrics_payload
from heritage_seg.runs.records import MetricsRecord
from tests.conftest import REPO

ARTEFACT = yaml.safe_load((REPO / "conf" / "labels" / "artefact.yaml").read_text())


def _pixels(seed: int = 0, n: int = 40_000):
    """Random truth and prediction over the 16 ARTeFACT classes, some pixels ignored; the prediction right on
    about half the pixels, so that every block has true and false positives."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 16, n)
    truth[rng.random(n) < 0.5] = 0  # mostly clean, as real scans are
    pred = np.where(rng.random(n) < 0.5, truth, rng.integers(0, 16, n))
    truth[rng.random(n) < 0.05] = 255
    return truth, pred


def _scores(truth_in: np.ndarray, pred_in: np.ndarray) -> dict[str, float]:
    """IoU, precision, recall of a yes/no task counted on the pixels themselves (not from a confusion matrix)."""
    tp = int((truth_in & pred_in).sum())
    return {
        "iou": tp / int((truth_in | pred_in).sum()),
        "precision": tp / int(pred_in.sum()),
        "recall": tp / int(truth_in.sum()),
    }


def test_binary_and_coarse_blocks_equal_a_recount_of_the_pixels():
    labels = LabelMap.from_config(ARTEFACT)
    truth, pred = _pixels()
    confmat = count_confusion(torch.from_numpy(truth), torch.from_numpy(pred), 16, 255).numpy()
    payload = metrics_payload(confmat, labels, fold=0)
    scored = truth != 255
    t, p = truth[scored], pred[scored]

    binary = payload["binary"]
    expected = _scores(t != labels.clean_index, p != labels.clean_index)
    for key, value in expected.items():
        assert binary[key] == pytest.approx(value)
    assert binary["f1"] == pytest.approx(
        2 * expected["precision"] * expected["recall"] / (expected["precision"] + expected["recall"])
    )
    assert binary["clean_class"] == "Clean"
    assert binary["damage_pixels"] == int((t != 0).sum()) and binary["pixels"] == scored.sum()

    coarse = payload["coarse"]
    assert list(coarse["groups"]) == [name for name, _ in labels.groups], "no 'Other damage': every class is grouped"
    ious = []
    for name, members in labels.groups_by_name().items():
        ids = [labels.names.index(c) for c in members]
        got = _scores(np.isin(t, ids), np.isin(p, ids))
        assert coarse["groups"][name]["iou"] == pytest.approx(got["iou"]), name
        assert coarse["groups"][name]["recall"] == pytest.approx(got["recall"]), name
        assert coarse["groups"][name]["classes"] == members
        ious.append(got["iou"])
    assert coarse["miou_gt"] == pytest.approx(np.mean(ious)) and coarse["miou"] == pytest.approx(np.mean(ious))
    MetricsRecord.from_dict(payload, strict=True)  # the blocks are fields of the record


def test_a_damage_class_in_no_group_is_counted_as_other_damage_and_a_map_without_groups_has_no_coarse_block():
    two_groups = {**ARTEFACT, "groups": {"Loss of material": ["Material loss", "Peel"], "Cracks": ["Cracks"]}}
    labels = LabelMap.from_config(two_groups)
    assert labels.coarse_names == ("Clean", "Loss of material", "Cracks", "Other damage")
    truth, pred = _pixels(seed=1)
    confmat = count_confusion(torch.from_numpy(truth), torch.from_numpy(pred), 16, 255).numpy()
    coarse = metrics_payload(confmat, labels, fold=0)["coarse"]
    scored = truth != 255
    others = [c for c in range(1, 16) if labels.names[c] not in ("Material loss", "Peel", "Cracks")]
    got = _scores(np.isin(truth[scored], others), np.isin(pred[scored], others))
    assert coarse["groups"]["Other damage"]["iou"] == pytest.approx(got["iou"])
    assert len(coarse["groups"]["Other damage"]["classes"]) == 12
    # the mean is over the damage groups the user named and the rest of the damage: never the clean class
    assert coarse["miou_gt"] == pytest.approx(np.mean([g["iou"] for g in coarse["groups"].values()]))

    plain = LabelMap.from_config({k: v for k, v in ARTEFACT.items() if k != "groups"})
    payload = metrics_payload(confmat, plain, fold=0)
    assert payload["coarse"] is None and payload["binary"]["iou"] is not None


def test_binary_is_undefined_not_zero_without_damage_and_old_metrics_files_get_it_from_their_matrix():
    labels = LabelMap.from_config(ARTEFACT)
    clean_only = np.zeros((16, 16), dtype=np.int64)
    clean_only[0, 0] = 100
    binary = metrics_payload(clean_only, labels, fold=0)["binary"]
    assert binary["iou"] is None and binary["recall"] is None and binary["accuracy"] == 1.0

    truth, pred = _pixels(seed=2)
    confmat = count_confusion(torch.from_numpy(truth), torch.from_numpy(pred), 16, 255).numpy()
    payload = metrics_payload(confmat, labels, fold=0)
    old = {k: v for k, v in payload.items() if k not in ("binary", "coarse")}  # a metrics.json of an earlier version
    assert MetricsRecord.from_dict(MetricsRecord.upgrade(old)).binary == payload["binary"]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"A": ["Cracks"], "B": ["Cracks", "Fold"]}, r"class 'Cracks' is in two groups \('A' and 'B'\)"),
        ({"A": ["Crack"]}, r"group 'A' names 'Crack', which is not a class of the map"),
        ({"A": ["Clean", "Fold"]}, r"group 'A' names the clean class 'Clean'"),
        ({"A": []}, r"group 'A' must list one or more class names"),
        (["Cracks"], r"`groups:` must map each group name to a list of class names"),
    ],
)
def test_bad_groups_are_refused(groups, message):
    with pytest.raises(ValueError, match=r"^my_labels\.yaml: " + message):
        LabelMap.from_config({**ARTEFACT, "groups": groups}, "my_labels.yaml")


def test_the_command_line_names_the_label_map_file_that_has_a_bad_group(tmp_path, spawns):
    conf = tmp_path / "my_conf" / "labels"
    conf.mkdir(parents=True)
    (conf / "my_labels.yaml").write_text(yaml.safe_dump({**ARTEFACT, "groups": {"A": ["Cracks"], "B": ["Cracks"]}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "heritage_seg.train",
            "--config-dir",
            str(tmp_path / "my_conf"),
            "labels=my_labels",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{conf / 'my_labels.yaml'}: class 'Cracks' is in two groups" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
