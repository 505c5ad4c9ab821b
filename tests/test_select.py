"""select: the rule separates duplicates and never re-picks what is covered; the command skips annotated and
unreadable scans, writes its ranking and page, and refuses bad options before touching a folder."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from heritage_seg.annotation.selection import select_scans
from heritage_seg.tasks.select import select
from tests.conftest import compose_config
from tests.helpers import check_html_page

# three candidates: A and its near-duplicate A2 (both very uncertain), B (less uncertain, elsewhere)
FEATURES = np.array([[1.0, 0.0, 0.0], [0.999, 0.001, 0.0], [0.0, 1.0, 0.0]])
UNCERTAINTY = np.array([0.9, 0.89, 0.5])


def test_the_diversity_step_separates_duplicates_that_uncertainty_alone_picks_together():
    assert [p.index for p in select_scans(UNCERTAINTY, FEATURES, None, 2, diversity=1.0)] == [0, 2]
    assert [p.index for p in select_scans(UNCERTAINTY, FEATURES, None, 2, diversity=0.0)] == [0, 1]
    second = select_scans(UNCERTAINTY, FEATURES, None, 2)[1]
    assert second.nearest == 0 and second.distance == pytest.approx(np.sqrt(2))


def test_a_candidate_like_an_annotated_scan_comes_last():
    covered = np.array([[1.0, 0.0, 0.0]])  # A is annotated already (in another file)
    picks = select_scans(UNCERTAINTY, FEATURES, covered, 3)
    assert [p.index for p in picks][0] == 2 and picks[0].nearest == -1
    assert picks[-1].score == pytest.approx(0.0, abs=1e-3)


def test_bad_budget_and_diversity_are_refused():
    with pytest.raises(ValueError, match="budget=0"):
        select_scans(UNCERTAINTY, FEATURES, None, 0)
    with pytest.raises(ValueError, match="diversity=-1"):
        select_scans(UNCERTAINTY, FEATURES, None, 1, diversity=-1)


def _cfg(ckpt, folder, *overrides):
    return compose_config([f"ckpt={ckpt}", f"input={folder}", *overrides], config_name="select")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory, sample_root):
    """Unannotated scans (from other sample images, resized), one duplicated under another name, one already
    annotated (an annotated image under its own id), one corrupt."""
    folder = tmp_path_factory.mktemp("unannotated")
    for k, sample_id in enumerate(["sample_010", "sample_011", "sample_012", "sample_013"]):
        image = Image.open(sample_root / "images" / f"{sample_id}.png").convert("RGB")
        image.resize((200 + 20 * k, 160)).save(folder / f"scan_{k}.png")
    shutil.copy(folder / "scan_0.png", folder / "scan_0_copy.png")
    shutil.copy(sample_root / "images" / "sample_001.png", folder / "sample_001.png")
    shutil.copy(sample_root / "images" / "sample_002.png", folder / "renamed.png")  # annotated, under a new name
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_select_skips_annotated_and_unreadable_scans_and_ranks_the_rest(trained_run, candidates, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    result = select(_cfg(ckpt, candidates, "budget=4"), tmp_path)  # annotated=auto: the run's own data
    assert result["skipped"]["sample_001.png"].startswith("annotated already: the annotated data has an image named")
    assert result["skipped"]["renamed.png"] == "annotated already: the same file is among the annotated images"
    assert result["skipped"]["broken.jpg"].startswith("unreadable")
    rows = list(csv.DictReader((tmp_path / "selection.csv").open()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    chosen = [r["scan"] for r in rows]
    assert "sample_001.png" not in chosen
    assert not {"scan_0.png", "scan_0_copy.png"} <= set(chosen[:3])  # a duplicate never before a new scan
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= float(r["uncertainty"]) <= 1 for r in rows)
    assert rows[0]["nearest"].startswith("annotated:")  # the sample data covers the feature space
    for name in chosen:
        assert (tmp_path / "uncertainty" / name).is_file()
    page = check_html_page(tmp_path / "selection.html")
    assert len([src for src in page.images if src.startswith("data:image/jpeg")]) == 2 * len(rows)
    assert {r[0] for r in csv.reader((tmp_path / "skipped.csv").open())} >= {"sample_001.png", "broken.jpg"}
    with pytest.raises(FileExistsError, match="overwrite=true"):
        select(_cfg(ckpt, candidates, "budget=4"), tmp_path)


def test_select_refuses_what_it_cannot_rank_before_making_a_folder(trained_run, candidates, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    with pytest.raises(ValueError, match="pass tta=true or several checkpoints"):
        select(_cfg(ckpt, candidates, "tta=false"), tmp_path / "a")
    with pytest.raises(ValueError, match="budget=0"):
        select(_cfg(ckpt, candidates, "budget=0"), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="annotated=.*nowhere"):
        select(_cfg(ckpt, candidates, f"annotated={tmp_path / 'nowhere'}"), tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")
