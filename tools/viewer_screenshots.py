"""The viewer's screenshots in docs/guide/ (viewer_overview.jpg, viewer_region_swipe.jpg, viewer_compare.jpg), from
real predictions of two checkpoints on a generated sample scan, taken in Debian's Chromium through Playwright:

    python tools/viewer_screenshots.py --ckpt <run A>/checkpoints/best.ckpt --ckpt <run B>/checkpoints/best.ckpt

The scan is the sample image (data/sample, `python -m heritage_seg.data.sample`) with the most annotated damage of
run A's validation fold; the comparison page lays both checkpoints' maps over its annotation."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from common import artefact_labels, compose_cfg  # noqa: E402

from heritage_seg.data.labels import LabelMap  # noqa: E402
from heritage_seg.reporting.viewer import scored_content, write_viewer  # noqa: E402
from heritage_seg.runs.folder import SPLITS  # noqa: E402
from heritage_seg.runs.records import SplitsRecord  # noqa: E402
from heritage_seg.tasks.predict import predict  # noqa: E402
from tests.browser import Page, file_url, launch  # noqa: E402  (the browser the viewer's tests drive)


def pick_scan(run: Path, root: Path, labels: LabelMap) -> tuple[Path, np.ndarray]:
    """Run A's validation image with the most annotated damage pixels, and its annotation as class ids."""
    ids = SplitsRecord.read(run / SPLITS).val_ids
    best = None
    for image_id in ids:
        raw = np.asarray(Image.open(root / "annotations" / f"{image_id}.png"))
        mask = labels.encode(raw, image_id)
        damage = int(((mask != labels.clean_index) & (mask != labels.ignore_index)).sum())
        if best is None or damage > best[0]:
            best = (damage, image_id, mask)
    _, image_id, mask = best
    (image,) = sorted((root / "images").glob(f"{image_id}.*"))
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, action="append", required=True, help="twice: run A's and run B's")
    parser.add_argument("--names", nargs=2, default=None, help="the two models' names on the comparison page")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "sample")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "guide")
    args = parser.parse_args()
    a, b = args.ckpt
    names = args.names or [a.parents[1].name, b.parents[1].name]
    labels = artefact_labels()
    scan, truth = pick_scan(a.parents[1], args.data, labels)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        Image.open(scan).convert("RGB").save(tmp / "in" / f"{scan.stem}.png")
        masks = {}
        for ckpt, name, out in ((a, names[0], tmp / "a"), (b, names[1], tmp / "b")):
            overrides = [f"ckpt={ckpt}", f"input={tmp / 'in'}", "tta=true", "dpi=300"]
            predict(compose_cfg("predict", overrides), out)
            masks[name] = np.asarray(Image.open(out / f"{scan.stem}_mask.png"))
        image = np.asarray(Image.open(tmp / "in" / f"{scan.stem}.png"))
        compare = write_viewer(
            tmp / "compare" / f"{scan.stem}_viewer.html",
            scored_content(scan.stem, image, truth, masks, labels, "two checkpoints on a generated sample scan"),
            labels,
        )
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = launch(pw)
            view = Page(browser, file_url(tmp / "a" / f"{scan.stem}_viewer.html"), size=(1400, 820))
            view.page.screenshot(path=str(args.out / "viewer_overview.jpg"), quality=88)
            if view.js("window.heritageViewer.data.regions.length"):
                view.page.locator("#regions button[data-region='0']").click()
                view.settle()
            view.page.locator("#swipe-on").check()
            region = view.js("window.heritageViewer.data.regions[0].bbox")
            middle = (region[0] + region[2]) / 2 / view.js("window.heritageViewer.data.width")
            view.js(f"window.heritageViewer.setSwipe({middle})")
            view.settle()
            view.page.screenshot(path=str(args.out / "viewer_region_swipe.jpg"), quality=88)
            view = Page(browser, file_url(compare), size=(1400, 820))
            view.page.locator("#layers input[data-layer-id='pred0']").uncheck()
            view.page.locator("#layers input[data-layer-id='disagree']").check()
            view.settle()
            view.page.screenshot(path=str(args.out / "viewer_compare.jpg"), quality=88)
            browser.close()
    print(f"wrote viewer_overview.jpg, viewer_region_swipe.jpg, viewer_compare.jpg to {args.out} ({scan.name})")


if __name__ == "__main__":
    main()
