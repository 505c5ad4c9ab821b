"""Full-resolution damage maps: outputs per image, report areas, odd inputs, bad files, no silent overwrite."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from heritage_seg.inference.sliding import count_windows
from heritage_seg.tasks.predict import predict
from tests.conftest import compose_config
from tests.helpers import check_html_page


def _cfg(ckpt, input_path, *overrides):
    return compose_config([f"ckpt={ckpt}", f"input={input_path}", *overrides], config_name="predict")


@pytest.fixture(scope="module")
def scans(tmp_path_factory, sample_root):
    folder = tmp_path_factory.mktemp("scans")
    rgb = np.asarray(Image.open(sample_root / "images" / "sample_003.png").convert("RGB"))
    Image.fromarray(rgb).resize((300, 210)).save(folder / "painting.tif")
    Image.fromarray(np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], 2), "RGBA").save(
        folder / "rgba.png"
    )
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (90, 120)).astype(np.uint16)).save(
        folder / "grey16.png"
    )
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


def test_report_html_shows_every_scan_sorted_by_damaged_share_with_working_links(predicted):
    out, result = predicted
    page = check_html_page(out / "report.html")  # pictures decode, links point at files beside it, no CDN
    shares = [float(row[3]) for row in page.rows[: len(result["done"])]]
    assert len(shares) == 4 and shares == sorted(shares, reverse=True)
    assert len([src for src in page.images if src.startswith("data:image/jpeg")]) == 4  # a thumbnail per scan
    for stem in ("painting", "tiny", "grey16", "rgba"):
        assert f"{stem}_overlay.jpg" in page.links and f"{stem}_mask.png" in page.links
    text = (out / "report.html").read_text()
    assert "corrupt.png" in text and "cannot decode" in text  # the failed scan is listed with its error


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


def test_a_portrait_phone_photo_is_mapped_as_viewers_show_it(trained_run, tmp_path):
    stored = np.full((60, 90, 3), 120, np.uint8)  # stored landscape, Orientation=6: viewed as 60 wide x 90 high
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif)
    predict(_cfg(trained_run / "checkpoints" / "best.ckpt", tmp_path / "phone.jpg"), tmp_path / "out")
    for suffix in ("_mask.png", "_overlay.jpg", "_confidence.png"):
        with Image.open(tmp_path / "out" / f"phone{suffix}") as img:
            assert img.size == (60, 90), suffix
    report = json.loads((tmp_path / "out" / "phone_report.json").read_text())
    assert (report["width"], report["height"]) == (60, 90)


def test_transparent_pixels_of_a_cut_out_are_not_object(trained_run, scans, tmp_path, labels):
    rgb = np.asarray(Image.open(scans / "painting.tif").convert("RGB"))
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, : rgb.shape[1] // 3] = 255  # a third of the picture is the object, the rest is cut away
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "cutout.png")
    predict(_cfg(trained_run / "checkpoints" / "best.ckpt", tmp_path / "cutout.png"), tmp_path / "out")
    report = json.loads((tmp_path / "out" / "cutout_report.json").read_text())
    inside = int((alpha > 0).sum())
    assert report["object_pixels"] == inside and report["transparent_pixels"] == alpha.size - inside
    shares = report["clean"]["percent_of_object"] + report["damage_total"]["percent_of_object"]
    assert shares == pytest.approx(100.0, abs=1e-3)
    mask = np.asarray(Image.open(tmp_path / "out" / "cutout_mask.png"))
    assert (mask[alpha == 0] == labels.ignore_index).all() and (mask[alpha > 0] < labels.num_classes).all()
    overlay = np.asarray(Image.open(tmp_path / "out" / "cutout_overlay.jpg")).astype(int)
    outside = overlay[20:, rgb.shape[1] // 3 + 10 :]  # below the legend: no damage colour painted over the cut-away
    assert np.abs(outside - rgb[20:, rgb.shape[1] // 3 + 10 :]).mean() < 6


def test_scans_with_the_same_name_keep_their_own_outputs(trained_run, scans, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = Image.open(scans / "painting.tif").convert("RGB")
    rgb.save(folder / "scan.tif")
    rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "scan.jpg")
    result = predict(_cfg(trained_run / "checkpoints" / "best.ckpt", folder), tmp_path / "out")
    assert sorted(result["done"]) == ["scan.jpg", "scan.tif"]
    for stem in ("scan_jpg", "scan_tif"):
        report = json.loads((tmp_path / "out" / f"{stem}_report.json").read_text())
        assert report["image"] == f"{stem.replace('_', '.')}" and report["outputs"] == stem
        assert (tmp_path / "out" / f"{stem}_mask.png").is_file()


def test_refusing_an_output_folder_names_output_and_overwrite(predicted, trained_run, scans):
    out, _ = predicted
    cfg = _cfg(trained_run / "checkpoints" / "best.ckpt", scans / "painting.tif", f"output={out}")
    with pytest.raises(FileExistsError, match=r"^output=.*already holds results.*overwrite=true") as info:
        predict(cfg, out)
    assert "hydra.run.dir" not in str(info.value)


def test_overlay_blend_in_strips_equals_the_float_formula(labels):
    from heritage_seg.reporting.figures import blend_damage

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    mask = rng.integers(0, labels.num_classes, (37, 23)).astype(np.uint8)
    mask[0] = labels.ignore_index  # outside a cut-out
    confidence = rng.integers(0, 256, (37, 23), dtype=np.uint8)
    out = blend_damage(image, mask, confidence, labels, alpha=0.5, rows=5)
    np.testing.assert_array_equal(out, blend_damage(image, mask, confidence, labels, alpha=0.5, rows=1000))
    damaged = ((mask != labels.clean_index) & (mask < labels.num_classes))[..., None]
    a = 0.5 * confidence[..., None] / 255.0 * damaged
    reference = image * (1 - a) + labels.palette()[mask] * a
    assert np.abs(out.astype(float) - reference).max() <= 1.0
    untouched = ~damaged[..., 0]
    np.testing.assert_array_equal(out[untouched], image[untouched])  # clean and outside pixels stay as they are


def test_window_and_stride_overrides_change_the_tiling_and_are_recorded(trained_run, scans, tmp_path):
    out = tmp_path / "pred"
    predict(
        _cfg(trained_run / "checkpoints" / "best.ckpt", scans / "painting.tif", "scale=1.0", "window=96", "stride=40"),
        out,
    )
    report = json.loads((out / "painting_report.json").read_text())
    assert (report["window"], report["stride"], report["precision"]) == (96, 40, "32-true")
    assert report["windows"] == count_windows(210, 300, 96, 40) > count_windows(210, 300, 96, 64)
    with Image.open(out / "painting_mask.png") as img:
        assert img.size == (300, 210)


@pytest.mark.slow
def test_a_squash_trained_model_maps_the_whole_scan_squashed_and_upsampled(trained_run, scans, tmp_path):
    """scale=auto on a squash-trained model: the scan as the model saw its training images (squashed to the
    training size, one pass), probabilities upsampled bilinearly to the scan's size: as native evaluation."""
    import torch
    import torch.nn.functional as F

    from heritage_seg.models.trained import load_model

    ckpt = trained_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "pred"
    predict(_cfg(ckpt, scans / "painting.tif"), out)
    report = json.loads((out / "painting_report.json").read_text())
    assert (report["scale"], report["protocol"], report["windows"]) == ("squash", "squash", 1)
    module = load_model(ckpt)
    run_cfg = module.run_config
    size = run_cfg.data.image_size
    scan = Image.open(scans / "painting.tif").convert("RGB")
    x = torch.from_numpy(np.asarray(scan.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)))
    with torch.no_grad():
        probs = module(x.permute(2, 0, 1)[None]).softmax(dim=1)
    expected = F.interpolate(probs, size=(210, 300), mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    mask = np.asarray(Image.open(out / "painting_mask.png"))
    assert (mask == expected).mean() > 0.999
    with pytest.raises(ValueError, match="pass scale=<factor>"):
        predict(_cfg(ckpt, scans / "painting.tif", "window=96"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ValueError, match="scale=big: auto, or a resize factor"):
        predict(_cfg(ckpt, scans / "painting.tif", "scale=big"), tmp_path / "refused")


def test_a_checkpoint_made_before_the_protocol_was_recorded_maps_as_squash_trained_at_its_size(
    trained_run, scans, tmp_path
):
    import torch

    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    del checkpoint["hyper_parameters"]["protocol"]
    old = tmp_path / "run" / "checkpoints" / "best.ckpt"
    old.parent.mkdir(parents=True)
    torch.save(checkpoint, old)
    out = tmp_path / "pred"
    predict(_cfg(old, scans / "painting.tif"), out)
    report = json.loads((out / "painting_report.json").read_text())
    size = checkpoint["hyper_parameters"]["run_config"]["data"]["image_size"]
    assert (report["scale"], report["protocol"], report["window"]) == ("squash", "squash", size)


def test_tta_writes_an_uncertainty_map_and_reports_it(trained_run, scans, tmp_path):
    """tta=true: <scan>_uncertainty.png at full size, its figures in report.json, report.csv and report.html."""
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "tta"
    predict(_cfg(ckpt, scans / "painting.tif", "tta=true", "scale=1.0"), out)
    spread = np.asarray(Image.open(out / "painting_uncertainty.png"))
    mask = np.asarray(Image.open(out / "painting_mask.png"))
    assert spread.shape == mask.shape == (210, 300) and spread.max() > 0  # an untrained net is not flip-invariant
    report = json.loads((out / "painting_report.json").read_text())["uncertainty"]
    assert report["views"] == 4 and report["threshold"] == 0.2
    assert report["mean"] == pytest.approx(spread.mean() / 255, abs=1e-4)
    damage = mask != 0
    expected = 100 * (spread[damage] >= 51).mean() if damage.any() else None
    assert report["damage_uncertain_percent"] == (pytest.approx(expected, abs=1e-4) if damage.any() else None)
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert {float(r["scan_mean_uncertainty"]) for r in rows} == {report["mean"]}
    clean = next(r for r in rows if r["kind"] == "clean")
    assert float(clean["mean_uncertainty"]) == pytest.approx(spread[mask == 0].mean() / 255, abs=1e-4)
    page = check_html_page(out / "report.html")
    assert "painting_uncertainty.png" in page.links
    assert float(page.rows[0][4]) == pytest.approx(report["mean"])  # the column after the damaged share


def test_one_view_writes_no_map_and_asking_for_one_is_refused(trained_run, scans, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    predict(_cfg(ckpt, scans / "painting.tif"), tmp_path / "plain")
    assert not (tmp_path / "plain" / "painting_uncertainty.png").exists()
    assert json.loads((tmp_path / "plain" / "painting_report.json").read_text())["uncertainty"] is None
    assert {r["mean_uncertainty"] for r in csv.DictReader((tmp_path / "plain" / "report.csv").open())} == {""}
    with pytest.raises(ValueError, match="uncertainty=true needs at least two views.*tta=true"):
        predict(_cfg(ckpt, scans / "painting.tif", "uncertainty=true"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before any folder is made


def test_an_ensemble_maps_with_every_member_and_equal_members_never_disagree(trained_run, scans, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    predict(_cfg(ckpt, scans / "painting.tif"), tmp_path / "one")
    predict(_cfg(f"[{ckpt},{ckpt}]", scans / "painting.tif"), tmp_path / "two")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "two" / "painting_mask.png")),
        np.asarray(Image.open(tmp_path / "one" / "painting_mask.png")),
    )
    report = json.loads((tmp_path / "two" / "painting_report.json").read_text())
    assert report["checkpoints"] == [str(ckpt), str(ckpt)] and report["uncertainty"]["views"] == 2
    assert np.asarray(Image.open(tmp_path / "two" / "painting_uncertainty.png")).max() == 0
