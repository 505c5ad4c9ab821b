"""tools/readme_picture.py: the README's picture is a validation image beside predict's real overlay."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import REPO

TOOL = str(REPO / "tools" / "readme_picture.py")


@pytest.mark.slow
def test_the_picture_is_a_validation_image_beside_its_overlay(trained_run, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    splits = json.loads((trained_run / "splits.json").read_text())
    out = tmp_path / "docs" / "picture.jpg"
    proc = subprocess.run(
        [sys.executable, TOOL, str(trained_run), "--out", str(out), "--height", "120"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    chosen = proc.stdout.strip().splitlines()[-1].split(": ", 1)[1].split()[0]  # the tool's summary line
    assert chosen in splits["val_ids"], "the picture must show an image the model did not train on"
    scan = Image.open(next((REPO / splits["root"] / "images").glob(f"{chosen}.*")))
    side = round(scan.width * 120 / scan.height)
    assert Image.open(out).size == (2 * side + 8, 120)  # scan | gap | overlay of the same size
    assert list(tmp_path.glob("outputs")) == [], "predict's log folder must not be left behind"

    train_id = splits["train_ids"][0]
    refused = subprocess.run(
        [sys.executable, TOOL, str(trained_run), "--image", train_id, "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0 and f"--image {train_id}: not a validation image" in refused.stderr
