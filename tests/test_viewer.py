"""The viewer's files without a browser: Deep Zoom pyramids (levels, tile sizes, pixels), class layers cropped to
their class, the page's data and scripts beside it, rewriting in place, and predict's viewer=/dpi= options."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from heritage_seg.reporting.damage import class_report
from heritage_seg.reporting.viewer import scan_content, tiles_folder, write_viewer
from heritage_seg.reporting.viewer.page import ASSET_FILES, ASSETS
from heritage_seg.reporting.viewer.pyramids import OVERLAP, TILE_SIZE, coloured_pyramids, rgb_pyramid
from heritage_seg.tasks.predict import predict
from tests import helpers
from tests.conftest import compose_config


def _page_data(page) -> dict:
    html = page.read_text()
    return json.loads(re.search(r'<script id="viewer-data" type="application/json">(.*?)</script>', html, re.S)[1])


def _level(folder, name, level):
    return {p.name for p in (folder / f"{name}_files" / str(level)).iterdir()}


def test_a_pyramid_has_every_deep_zoom_level_with_tiles_of_the_declared_size(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (300, 1100, 3), dtype=np.uint8)
    pyramid = rgb_pyramid(image, tmp_path, "scan", "tiles/")
    top = math.ceil(math.log2(1100))  # Deep Zoom: level n is the image shrunk by 2^(top - n), level 0 is 1 x 1
    levels = sorted(int(p.name) for p in (tmp_path / "scan_files").iterdir())
    assert levels == list(range(top + 1))
    assert _level(tmp_path, "scan", top) == {f"{c}_{r}.jpg" for c in range(5) for r in range(2)}  # 1100/254, 300/254
    with Image.open(tmp_path / "scan_files" / str(top) / "1_0.jpg") as tile:  # inner tile: overlap on both sides
        assert tile.size == (TILE_SIZE + 2 * OVERLAP, TILE_SIZE + OVERLAP)
    with Image.open(tmp_path / "scan_files" / "0" / "0_0.jpg") as tile:
        assert tile.size == (1, 1)
    source = pyramid.tile_source()["Image"]
    assert source["Url"] == "tiles/scan_files/" and source["Format"] == "jpg"
    assert source["Size"] == {"Width": "1100", "Height": "300"}


def test_a_layer_up_to_1024_px_is_one_picture_not_a_pyramid(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (300, 1024, 3), dtype=np.uint8)
    pyramid = rgb_pyramid(image, tmp_path, "scan", "tiles/")
    assert pyramid.tile_source() == {"type": "image", "url": "tiles/scan.jpg", "buildPyramid": False}
    assert not (tmp_path / "scan_files").exists()
    with Image.open(tmp_path / "scan.jpg") as picture:
        assert picture.size == (1024, 300)


def test_a_class_layer_covers_its_class_in_its_colour_and_keeps_a_thin_line_when_zoomed_out(tmp_path):
    mask = np.zeros((200, 1400), np.uint8)
    mask[50:90, 100:180] = 3
    mask[150, 20:1380] = 5  # one pixel high, longer than one picture: a pyramid
    written = coloured_pyramids(mask, {3: (10, 200, 30), 5: (250, 0, 0), 6: (0, 0, 255)}, tmp_path, "d_", "t/")
    assert set(written) == {3, 5}  # no layer for an absent class
    block, line = written[3], written[5]
    assert (block.x, block.y, block.width, block.height) == (100, 50, 80, 40)  # the class's bounding box only
    assert (line.x, line.y, line.width, line.height) == (20, 150, 1360, 1)
    assert block.single and not line.single
    with Image.open(tmp_path / "d_003.png") as picture:
        rgba = np.asarray(picture)
    assert rgba.shape == (40, 80, 4) and (rgba == [10, 200, 30, 255]).all()
    line_top = math.ceil(math.log2(1360))
    with Image.open(tmp_path / "d_005_files" / str(line_top - 3) / "0_0.png") as tile:  # shrunk 8 x
        shrunk = np.asarray(tile)
    assert shrunk.shape[1] == 170 and (shrunk[..., 3] == 255).all()  # max shrink: the line is still opaque


def _scan(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    mask[10:40, 20:60] = 2
    mask[70:100, 90:150] = 11
    mask[5, 5] = 11
    return image, mask


def test_the_page_holds_its_layers_regions_and_scripts_and_fetches_nothing(tmp_path, labels):
    image, mask = _scan()
    spread = np.full(mask.shape, 40, np.uint8)
    report = class_report(mask, labels)
    page = write_viewer(tmp_path / "s_viewer.html", scan_content("s.tif", image, mask, labels, report, spread), labels)
    data = _page_data(page)
    assert (data["width"], data["height"]) == (160, 120)
    damage = next(layer for layer in data["layers"] if layer["id"] == "damage")
    assert [item["class_id"] for item in damage["items"]] == [2, 11]
    assert [c["name"] for c in data["classes"]] == [labels.names[2], labels.names[11]]
    assert [layer["id"] for layer in data["layers"]] == ["damage", "uncertainty"]
    assert data["regions"][0] == {
        "class": labels.names[11],
        "color": data["classes"][1]["color"],
        "pixels": 30 * 60,
        "bbox": [90, 70, 150, 100],
    }
    assert [r["pixels"] for r in data["regions"]] == sorted((r["pixels"] for r in data["regions"]), reverse=True)
    for item in [data["base"], *(i["pyramid"] for i in damage["items"])]:
        assert (tmp_path / item["source"]["url"]).is_file()  # 160 x 120: pictures, not pyramids
    html = page.read_text()
    scripts = re.findall(r'<script src="([^"]+)"', html) + re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert scripts and all((tmp_path / s).is_file() for s in scripts)  # beside the page, nothing from the web
    assert "http://" not in html.replace("http://schemas.microsoft.com/deepzoom/2008", "") and "https://" not in html
    assert {p.name for p in (tmp_path / ASSETS).iterdir()} == set(ASSET_FILES)
    assert "Redistribution and use" in (tmp_path / ASSETS / "LICENSE-openseadragon.txt").read_text()


def test_writing_again_replaces_the_tiles_and_leaves_no_temporary_folder(tmp_path, labels):
    image, mask = _scan()
    page = tmp_path / "s_viewer.html"
    write_viewer(page, scan_content("s", image, mask, labels, class_report(mask, labels)), labels)
    assert (tiles_folder(page) / "damage_002.png").is_file()
    mask[mask == 2] = 0
    write_viewer(page, scan_content("s", image, mask, labels, class_report(mask, labels)), labels)
    assert not (tiles_folder(page) / "damage_002.png").exists()  # the class is gone: so is its old layer
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ASSETS, "s_viewer", "s_viewer.html"])


@pytest.fixture(scope="module")
def scan_folder(tmp_path_factory, sample_root):
    folder = tmp_path_factory.mktemp("viewer_scans")
    return helpers.scan_folder(sample_root, folder, ["sample_003.png"], (300, 210), ["painting.tif"])


def test_predict_writes_a_viewer_per_scan_linked_from_its_report(trained_run, scan_folder, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    predict(compose_config([f"ckpt={ckpt}", f"input={scan_folder}", "dpi=400"], config_name="predict"), tmp_path)
    report = json.loads((tmp_path / "painting_report.json").read_text())
    assert report["viewer"] == "painting_viewer.html" and report["dpi"] == 400
    assert report["seconds"]["viewer"] >= 0
    data = _page_data(tmp_path / "painting_viewer.html")
    assert data["dpi"] == 400 and (data["width"], data["height"]) == (300, 210)
    mask = np.asarray(Image.open(tmp_path / "painting_mask.png"))
    damage = next(layer for layer in data["layers"] if layer["id"] == "damage")
    present = sorted(int(c) for c in np.unique(mask) if c != 0)
    assert [item["class_id"] for item in damage["items"]] == present
    assert 'href="painting_viewer.html"' in (tmp_path / "report.html").read_text()


def test_viewer_false_writes_masks_only_and_a_bad_dpi_is_refused_before_any_folder(trained_run, scan_folder, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    predict(compose_config([f"ckpt={ckpt}", f"input={scan_folder}", "viewer=false"], config_name="predict"), tmp_path)
    assert (tmp_path / "painting_mask.png").is_file()
    assert not (tmp_path / "painting_viewer.html").exists() and not (tmp_path / ASSETS).exists()
    assert json.loads((tmp_path / "painting_report.json").read_text())["viewer"] is None
    assert 'href="painting_overlay.jpg"><img' in (tmp_path / "report.html").read_text()
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match=r"dpi=-3: the scans' resolution in dots per inch"):
        predict(compose_config([f"ckpt={ckpt}", f"input={scan_folder}", "dpi=-3"], config_name="predict"), out)
    assert not out.exists()


def test_a_failed_viewer_leaves_the_scans_masks_and_report(trained_run, scan_folder, tmp_path, monkeypatch, caplog):
    import heritage_seg.tasks.predict as predict_task

    def full_disk(page, *args):
        raise OSError(f"{page}: [Errno 28] No space left on device")

    monkeypatch.setattr(predict_task, "write_viewer", full_disk)
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    result = predict(compose_config([f"ckpt={ckpt}", f"input={scan_folder}"], config_name="predict"), tmp_path)
    assert result["done"] == ["painting.tif"] and not result["failed"]
    assert json.loads((tmp_path / "painting_report.json").read_text())["viewer"] is None
    assert (tmp_path / "painting_mask.png").is_file()
    assert "no viewer page" in caplog.text and "No space left" in caplog.text


def test_tiles_that_cannot_be_written_raise_an_os_error_naming_the_pyramid(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the tiles' folder should be")
    with pytest.raises(OSError, match=r"not_a_folder/scan: writing the viewer's tiles failed"):
        rgb_pyramid(np.zeros((64, 1100, 3), np.uint8), blocker, "scan", "x/")
    with pytest.raises(OSError, match=r"not_a_folder/scan: writing the viewer's picture failed"):
        rgb_pyramid(np.zeros((64, 64, 3), np.uint8), blocker, "scan", "x/")


def test_small_maps_get_the_same_layers_from_numpy_as_from_libvips(tmp_path, monkeypatch):
    """coloured_pyramids writes maps of at most 1024 px with NumPy/PIL (libvips' per-operation cost dominates
    there): the same boxes and pixels as the libvips path gives at full resolution."""
    import heritage_seg.reporting.viewer.pyramids as pyramids

    mask = np.random.default_rng(3).integers(0, 4, (120, 200)).astype(np.uint8)
    mask[:, :30] = 0  # class boxes that do not start at 0
    colors = {1: (250, 0, 0), 2: (0, 250, 0), 3: (0, 0, 250)}
    small = coloured_pyramids(mask, colors, tmp_path, "n_", "t/")
    monkeypatch.setattr(pyramids, "SINGLE_IMAGE_MAX", 0)  # every layer a pyramid, through libvips
    big = coloured_pyramids(mask, colors, tmp_path, "v_", "t/")
    assert set(small) == set(big) == {1, 2, 3}
    for value in colors:
        a, b = small[value], big[value]
        assert (a.x, a.y, a.width, a.height) == (b.x, b.y, b.width, b.height)
        top = math.ceil(math.log2(max(b.width, b.height)))
        picture = np.asarray(Image.open(tmp_path / f"n_{value:03d}.png"))
        tile = np.asarray(Image.open(tmp_path / f"v_{value:03d}_files" / str(top) / "0_0.png"))
        assert (picture == tile).all()


def test_a_large_maps_class_layers_make_no_full_size_numpy_copy(tmp_path):
    """Memory stays bounded on a 100-Mpx map: the large-map path streams through libvips. A bug found by the
    benchmark: np.bincount to find the classes present cast the whole map to int64 (+864 MiB at 12,000 x 9,000).
    Here NumPy's own allocations (tracemalloc sees them) must stay below a quarter byte per pixel."""
    import tracemalloc

    mask = np.zeros((1500, 2000), np.uint8)
    mask[100:400, 200:900] = 4
    mask[1000:1400, 1200:1900] = 9
    tracemalloc.start()
    coloured_pyramids(mask, {4: (1, 2, 3), 9: (4, 5, 6)}, tmp_path, "d_", "t/")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < mask.size / 4, f"{peak / mask.size:.2f} bytes per pixel"


def test_the_pages_links_are_urls_of_the_files_they_name(tmp_path, labels):
    """Links are given as file names and written quoted, by write_viewer for every caller (predict quoted its
    own, evaluate's panel links were not: an image id with '#' or ' ' broke them)."""
    image, mask = _scan()
    content = scan_content("s", image, mask, labels, class_report(mask, labels))
    content.links = [{"href": "recto #2_pred.png", "text": "prediction"}]
    html = write_viewer(tmp_path / "s_viewer.html", content, labels).read_text()
    assert '<a href="recto%20%232_pred.png">prediction</a>' in html
