"""The viewer page in a real browser (Debian's Chromium through Playwright): it opens from file:// and over HTTP
with no error in the console, zooming in loads deeper tiles, switching a class off changes that class's pixels
only, the swipe hides the layers left of its line, and a region in the list zooms to its bounding box."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest

from heritage_seg.reporting.damage import class_report
from heritage_seg.reporting.viewer import scan_content, write_viewer
from tests.browser import Page, file_url, launch

playwright_api = pytest.importorskip("playwright.sync_api")

W, H = 3000, 2000  # as the new user tried it
BLOCKS = {3: (300, 400, 1000, 1100), 7: (1500, 300, 2100, 800), 9: (1900, 1250, 2800, 1800)}  # x0, y0, x1, y1


@pytest.fixture(scope="module")
def viewer_page(tmp_path_factory, labels):
    """A 3,000 x 2,000 scan with three classes in known blocks, a one-pixel line of a fourth, an uncertainty map."""
    out = tmp_path_factory.mktemp("viewer")
    y, x = np.mgrid[0:H, 0:W]
    image = np.stack([x * 255 // W, y * 255 // H, np.full_like(x, 90)], axis=2).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    for class_id, (x0, y0, x1, y1) in BLOCKS.items():
        mask[y0:y1, x0:x1] = class_id
    mask[150, 100:2900] = 5  # a one-pixel line: still drawn when zoomed out (max shrink)
    spread = ((x + y) * 255 // (W + H)).astype(np.uint8)
    report = class_report(mask, labels)
    content = scan_content("blocks.png", image, mask, labels, report, spread, dpi=600)
    page = write_viewer(out / "blocks_viewer.html", content, labels)
    return page, mask


@pytest.fixture(scope="module")
def browser(spawns):
    with playwright_api.sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 8


def test_the_page_opens_from_file_and_zooming_in_loads_deeper_tiles(viewer_page, browser):
    page_path, _ = viewer_page
    view = Page(browser, file_url(page_path))
    assert view.errors == []
    top = view.js("window.heritageViewer.base().source.maxLevel")
    before = view.js("window.heritageViewer.deepest.scan")
    assert before < top  # the whole scan in a 710 px wide view needs no full-resolution tile
    view.js(
        """() => { const v = window.heritageViewer; const base = v.base();
        v.viewer.viewport.zoomTo(base.imageToViewportZoom(4), base.imageToViewportCoordinates(1800, 550), true); }"""
    )
    view.settle()  # into class 7's block at 4 screen px per scan px: the deepest level of both layers
    assert view.js("window.heritageViewer.deepest.scan") == top
    class_top = view.js("window.heritageViewer.entries.find((e) => e.classId === 7).item.source.maxLevel")
    assert view.js("window.heritageViewer.deepest['damage:7']") == class_top  # its own pyramid: its box only
    assert view.errors == []
    view.page.close()


def test_switching_a_class_off_changes_only_that_class_pixels(viewer_page, browser):
    page_path, mask = viewer_page
    view = Page(browser, file_url(page_path))
    view.js("window.heritageViewer.setOpacity(1)")
    view.settle()
    shown = view.pixels()
    view.page.locator("#classes input[data-class-id='7']").uncheck()
    view.settle()
    hidden = view.pixels()
    view.page.locator("#layers input[data-layer-id='damage']").uncheck()
    view.settle()
    scan_only = view.pixels()
    changed = _changed(shown, hidden)
    x0, y0, x1, y1 = view.screen_box(BLOCKS[7])
    assert changed[y0:y1, x0:x1].mean() > 0.8  # the class's block now shows the scan
    inside = np.zeros_like(changed)
    inside[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = True
    assert not view.outside_overview(changed & ~inside).any()  # nothing else moved: other classes, line, scan
    for other in (3, 9):
        a0, b0, a1, b1 = view.screen_box(BLOCKS[other])
        assert not _changed(shown[b0:b1, a0:a1], hidden[b0:b1, a0:a1]).any()
        assert _changed(shown, scan_only)[b0:b1, a0:a1].mean() > 0.8  # which are drawn: they differ from the scan
    assert view.errors == []
    view.page.close()


def test_the_swipe_hides_the_layers_left_of_its_line(viewer_page, browser):
    page_path, _ = viewer_page
    view = Page(browser, file_url(page_path))
    view.js("window.heritageViewer.setOpacity(1)")
    view.settle()
    shown = view.pixels()
    view.page.locator("#swipe-on").check()  # the line at the middle of the scan (x = 300 px)
    view.settle()
    swiped = view.pixels()
    left = view.screen_box(BLOCKS[3])  # x 300..1000: left of the line, now the scan only
    right = view.screen_box(BLOCKS[9])  # x 1900..2800: right of it, unchanged (but its antialiased edge)
    assert _changed(shown, swiped)[left[1] : left[3], left[0] : left[2]].mean() > 0.8
    assert not _changed(shown, swiped)[right[1] + 2 : right[3] - 2, right[0] + 2 : right[2] - 2].any()
    assert view.errors == []
    view.page.close()


def test_clicking_a_region_zooms_to_its_bounding_box(viewer_page, browser):
    page_path, _ = viewer_page
    view = Page(browser, file_url(page_path))
    regions = view.js("window.heritageViewer.data.regions")
    assert regions[0]["bbox"] == list(BLOCKS[9])  # the largest first
    target = next(i for i, r in enumerate(regions) if r["bbox"] == list(BLOCKS[7]))
    view.page.locator(f"#regions button[data-region='{target}']").click()
    view.settle()
    x0, y0, x1, y1 = view.js("window.heritageViewer.view()")
    bx0, by0, bx1, by1 = BLOCKS[7]
    assert x0 <= bx0 and y0 <= by0 and x1 >= bx1 and y1 >= by1  # the whole region is in view
    assert min((x1 - x0) / (bx1 - bx0), (y1 - y0) / (by1 - by0)) < 1.6  # and fills it (padding 15 % a side)
    assert view.errors == []
    view.page.close()


def test_the_scale_reads_in_pixels_and_millimetres(viewer_page, browser):
    page_path, _ = viewer_page
    view = Page(browser, file_url(page_path))
    text = view.page.locator("#scale-text").inner_text()
    assert "mm" in text and "px" in text  # dpi=600 was given
    width = view.page.locator("#scalebar").bounding_box()["width"]
    mm = float(text.split(" mm")[0])
    screen_per_px = view.js(
        "(() => { const v = window.heritageViewer; return v.base().viewportToImageZoom("
        "v.viewer.viewport.getZoom(true)); })()"
    )
    assert width == pytest.approx(mm / 25.4 * 600 * screen_per_px, abs=5)  # the bar is as long as it says
    view.page.close()


def test_the_page_works_over_http_too(viewer_page, browser):
    page_path, _ = viewer_page
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page_path.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        view = Page(browser, f"http://127.0.0.1:{server.server_port}/{page_path.name}")
        assert view.js("window.heritageViewer.deepest.scan") >= 0
        assert view.errors == []
        view.page.close()
    finally:
        server.shutdown()


def test_predict_viewer_of_a_mapped_scan_opens_with_every_layer(trained_run, sample_root, tmp_path, browser):
    """The page `predict` writes for a scan mapped by a trained checkpoint, with TTA (so an uncertainty layer):
    no console error when it opens or when every layer and class is switched on and the first region is clicked."""
    from heritage_seg.tasks.predict import predict
    from tests.conftest import compose_config
    from tests.helpers import scan_folder

    scans = scan_folder(sample_root, tmp_path / "scans", ["sample_003.png"], (700, 500), ["fresco.jpg"])
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    cfg = compose_config([f"ckpt={ckpt}", f"input={scans}", "tta=true", "dpi=300"], config_name="predict")
    predict(cfg, tmp_path / "out")
    view = Page(browser, file_url(tmp_path / "out" / "fresco_viewer.html"))
    layers = view.js("window.heritageViewer.data.layers.map((l) => l.id)")
    assert layers == ["damage", "uncertainty"]
    view.page.locator("#layers input[data-layer-id='uncertainty']").check()
    view.settle()
    assert view.js("window.heritageViewer.deepest.uncertainty") >= 0  # its tiles were fetched once shown
    if view.js("window.heritageViewer.data.regions.length"):
        view.page.locator("#regions button[data-region='0']").click()
        view.settle()
    assert view.errors == []
    view.page.close()


def test_a_comparison_page_shows_where_two_models_disagree(tmp_path, labels, browser):
    """evaluate's and aggregate's pages: truth, two predictions, where each is wrong, where they disagree."""
    from heritage_seg.reporting.viewer import scored_content

    image = np.full((300, 400, 3), 128, np.uint8)
    truth = np.zeros((300, 400), np.uint8)
    truth[50:150, 50:350] = 9
    a, b = truth.copy(), truth.copy()
    b[50:150, 200:350] = 0  # b misses the right half
    content = scored_content("img7", image, truth, {"convnext": a, "mit_b3": b}, labels)
    page = write_viewer(tmp_path / "img7_viewer.html", content, labels)
    view = Page(browser, file_url(page))
    before = view.pixels()
    view.page.locator("#layers input[data-layer-id='disagree']").check()
    view.settle()
    changed = _changed(before, view.pixels())
    x0, y0, x1, y1 = view.screen_box((200, 50, 350, 150))
    assert changed[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].all()  # the disagreement is drawn where b missed
    changed[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = False
    assert not view.outside_overview(changed).any()  # and nowhere else
    assert view.errors == []
    view.page.close()


def test_a_scan_named_with_a_hash_and_spaces_opens_in_the_viewer(tmp_path, labels, browser):
    """Tile URLs are URLs: a '#' in 'recto #2' would end the path and a ' ' break it if not quoted."""
    image = np.full((300, 400, 3), 200, np.uint8)
    mask = np.zeros((300, 400), np.uint8)
    mask[100:200, 100:300] = 9
    content = scan_content("recto #2.tif", image, mask, labels, class_report(mask, labels))
    page = write_viewer(tmp_path / "recto #2_viewer.html", content, labels)
    view = Page(browser, file_url(page))
    assert view.js("window.heritageViewer.deepest.scan") >= 0
    assert view.js("window.heritageViewer.deepest['damage:9']") >= 0
    assert view.errors == []
    view.page.close()
