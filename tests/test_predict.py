"""Full-resolution damage maps: outputs per image, report areas, odd inputs, bad files, no silent overwrite."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from heritage_seg.predict import predict
from heritage_seg.sliding import count_windows
from tests.conftest import compose_config


def _cfg(ckpt, input_path, *overrides):
    return compose_config([f"ckpt={ckpt}", f"input={input_path}", *overrides], config_name="predict")


@pytest.fixture(scope="module")
def scans(tmp_path_factory, sample_root):
    folder = tmp_path_factory.mktemp("scans")
    rgb = np.asarray(Image.open(sample_root / "images" / "sample_003.png").convert("RGB"))
    Image.fromarray(rgb).resize((300, 210)).save(folder / "painting.tif")
    Image.fromarray(np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], 2), "RGBA").save(
        folder / "rgba.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (90, 120)).astype(np.uint16)).save(
        folder / "grey16.png")
    Image.fromarray(rgb[:40, :30]).save(folder / "tiny.jpg")  # smaller than one 64 px window
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


@pytest.fixture(scope="module")
def predicted(trained_run, scans, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred")
    result = predict(_cfg(trained_run / "checkpoints" / "best.ckpt", scans), out)
    return out, result


def test_every_good_scan_is_mapped_and_the_corrupt_one_is_reported(predicted, scans):
    out, result = predicted
    assert sorted(result["done"]) == ["grey16.png", "painting.tif", "rgba.png", "tiny.jpg"]
    assert list(result["failed"]) == [str(scans / "corrupt.png")]
    assert "cannot decode" in json.loads((out / "failed.json").read_text())[str(scans / "corrupt.png")]
    for stem, size in (("painting", (300, 210)), ("tiny", (30, 40)), ("grey16", (120, 90))):
        for suffix in ("_mask.png", "_confidence.png", "_overlay.jpg"):
            with Image.open(out / f"{stem}{suffix}") as img:
                assert img.size == size, f"{stem}{suffix} must be at the scan's full resolution"


def test_report_areas_equal_mask_pixel_counts(predicted, labels):
    out, _ = predicted
    mask = np.asarray(Image.open(out / "painting_mask.png"))  # palette PNG: pixel values are class ids
    report = json.loads((out / "painting_report.json").read_text())
    counts = np.bincount(mask.reshape(-1), minlength=16)
    assert report["object_pixels"] == mask.size == 300 * 210
    assert report["clean"]["pixels"] == counts[0]
    assert report["damage_total"]["pixels"] == mask.size - counts[0]
    for class_id, name in enumerate(labels.names[1:], start=1):
        entry = report["damage"][name]
        assert entry["pixels"] == counts[class_id]
        assert entry["percent_of_object"] == pytest.approx(100 * counts[class_id] / mask.size, abs=1e-4)
        if counts[class_id]:
            x0, y0, x1, y1 = entry["largest_region_bbox"]
            assert (mask[y0:y1, x0:x1] == class_id).sum() >= entry["largest_region_pixels"] > 0
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert {r["image"] for r in rows} == {"painting.tif", "rgba.png", "grey16.png", "tiny.jpg"}
    assert sum(int(r["pixels"]) for r in rows if r["image"] == "painting.tif") == mask.size


def test_an_output_folder_with_results_is_not_overwritten_without_overwrite_true(predicted, trained_run, scans):
    out, _ = predicted
    before = (out / "painting_mask.png").read_bytes()
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    with pytest.raises(FileExistsError, match="already holds results"):
        predict(_cfg(ckpt, scans / "painting.tif"), out)
    assert (out / "painting_mask.png").read_bytes() == before
    predict(_cfg(ckpt, scans / "painting.tif", "overwrite=true", "tta=true"), out)
    assert json.loads((out / "painting_report.json").read_text())["tta"] is True


def test_scale_keeps_outputs_at_full_resolution(trained_run, scans, tmp_path):
    predict(_cfg(trained_run / "checkpoints" / "best.ckpt", scans / "painting.tif", "scale=0.5"), tmp_path)
    report = json.loads((tmp_path / "painting_report.json").read_text())
    assert report["scale"] == 0.5 and report["windows"] < count_windows(210, 300, 64, 43)
    with Image.open(tmp_path / "painting_mask.png") as img:
        assert img.size == (300, 210)


def test_missing_input_is_named(trained_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="input=.*nowhere: no such file or folder"):
        predict(_cfg(trained_run / "checkpoints" / "best.ckpt", tmp_path / "nowhere"), tmp_path / "out")
