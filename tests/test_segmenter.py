"""The Python API (issue 36): `heritage_seg.Segmenter` loads what ckpt= takes and maps an image as predict does;
a file, a PIL image and an array are the same image to it; a cut-out's transparent pixels are not object."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import heritage_seg
from heritage_seg.inference.segmenter import Segmenter
from tests.conftest import compose_config
from tests.helpers import scan_folder


@pytest.fixture(scope="module")
def segmenter(trained_run):
    return heritage_seg.Segmenter.load(trained_run / "checkpoints" / "best.ckpt", device="cpu", tta=False)


def test_the_package_offers_the_segmenter_and_it_maps_as_predict_does(segmenter, trained_run, sample_root, tmp_path):
    from heritage_seg.tasks.predict import predict

    assert heritage_seg.Segmenter is Segmenter
    scans = scan_folder(sample_root, tmp_path / "scans")
    scan = next(scans.iterdir())
    ckpt = f"ckpt={trained_run}/checkpoints/best.ckpt"
    predict(compose_config([ckpt, f"input={scans}", "viewer=false"], "predict"), tmp_path / "p")
    result = segmenter.map(scan)
    written = np.asarray(Image.open(tmp_path / "p" / f"{scan.stem}_mask.png"))
    assert np.array_equal(result.classes, written), "the notebook's map is predict's"
    with Image.open(scan) as image:
        assert result.classes.shape == (image.height, image.width) == result.confidence.shape
    assert result.uncertainty is None and result.views == 0  # one model, one view: nothing to disagree


def test_a_file_a_pil_image_and_an_array_are_the_same_image(segmenter, sample_root):
    path = sorted((sample_root / "images").iterdir())[0]
    by_path = segmenter.map(path)
    with Image.open(path) as image:
        by_image = segmenter.map(image.convert("RGB"))
        by_array = segmenter.map(np.asarray(image.convert("RGB")))
    assert np.array_equal(by_path.classes, by_image.classes) and np.array_equal(by_path.classes, by_array.classes)
    shares = by_path.shares()
    assert list(shares) == list(segmenter.labels.names) and sum(shares.values()) == pytest.approx(1.0)
    assert by_path.damaged() == pytest.approx(1 - shares[segmenter.labels.clean_name])
    colours = by_path.colours()
    assert colours.shape == (*by_path.classes.shape, 3)
    first = by_path.classes[0, 0]
    assert tuple(colours[0, 0]) == segmenter.labels.colors[first]
    with pytest.raises(ValueError, match=r"image: an \(H, W, 3\) uint8 RGB array"):
        segmenter.map(np.zeros((8, 8), dtype=np.float32))


def test_a_cut_outs_transparent_pixels_are_no_object(segmenter, sample_root):
    with Image.open(sorted((sample_root / "images").iterdir())[0]) as image:
        rgba = np.dstack([np.asarray(image.convert("RGB")), np.full(image.size[::-1], 255, np.uint8)])
    rgba[:, : rgba.shape[1] // 2, 3] = 0  # the left half is background
    result = segmenter.map(rgba)
    left, right = result.classes[:, : rgba.shape[1] // 2], result.classes[:, rgba.shape[1] // 2 :]
    assert (left == segmenter.labels.ignore_index).all() and (result.confidence[:, : rgba.shape[1] // 2] == 0).all()
    assert (right < segmenter.labels.num_classes).all()
    assert sum(result.shares().values()) == pytest.approx(1.0), "shares are of the object's pixels"


def test_tta_and_ensembles_give_an_uncertainty_and_bad_options_fail_before_anything_moves(trained_run, sample_root):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    image = sorted((sample_root / "images").iterdir())[0]
    with_tta = Segmenter.load(ckpt, device="cpu", tta=True).map(image)
    assert with_tta.views == 4 and with_tta.uncertainty is not None
    ensemble = Segmenter.load([ckpt, ckpt], device="cpu", tta=False)
    assert ensemble.map(image).views == 2 and ensemble.sources == [str(ckpt)] * 2
    assert ensemble.features(image).shape == (2 * 768,)  # each member's pooled ConvNeXt-T features
    with pytest.raises(ValueError, match="tta: unknown transform"):
        Segmenter.load(ckpt, device="cpu", tta=["sideways"])
    with pytest.raises(FileNotFoundError, match="ckpt=.*nothing.ckpt: file not found"):
        Segmenter.load(trained_run / "nothing.ckpt")
