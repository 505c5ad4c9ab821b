"""A real browser for the viewer's tests: Debian's Chromium driven by Playwright (its own browser download cannot
run here, so the executable is given). Tests that need it skip, saying why, where there is no Chromium, except
where HERITAGE_REQUIRE_BROWSER=1 (CI sets it): there a missing browser fails instead of hiding the tests."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# As the machine's notes start Chromium as root in a closed network: no sandbox (root), no GPU, no background
# connections (refused here, many at a time, and each a console error)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("HERITAGE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def launch(playwright):
    path = chromium_path()
    if path is None:
        message = "no Chromium: apt-get install chromium (or set HERITAGE_CHROMIUM to a Chromium executable)"
        if os.environ.get("HERITAGE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


class Page:
    """One opened viewer page, with the console's errors collected from the first moment."""

    def __init__(self, browser, url: str, size: tuple[int, int] = (1000, 700)):
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} {r.failure}"))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        self.settle()

    def settle(self) -> None:
        """Wait until the view stopped moving and every visible layer's tiles for it are drawn."""
        self.page.wait_for_function("window.heritageViewer.idle()", timeout=30_000)
        self.page.wait_for_timeout(150)
        self.page.wait_for_function("window.heritageViewer.idle()", timeout=30_000)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def pixels(self) -> np.ndarray:
        """What the viewer's canvas shows now, (H, W, 3) uint8, in the page's CSS pixels."""
        png = self.page.locator("#osd").screenshot()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def outside_overview(self, flags: np.ndarray) -> np.ndarray:
        """`flags` (in #osd's pixels) with the overview in the corner cleared: it mirrors every layer, so a
        change there is expected and is not a change of the main view."""
        nav = self.page.locator(".navigator").bounding_box()
        osd = self.page.locator("#osd").bounding_box()
        flags = flags.copy()
        flags[int(nav["y"] - osd["y"]) :, int(nav["x"] - osd["x"]) :] = False
        return flags

    def screen_box(self, bbox) -> tuple[int, int, int, int]:
        """A scan-pixel box [x0, y0, x1, y1] in #osd's screen pixels (rounded outwards)."""
        corners = self.js(
            """([x0, y0, x1, y1]) => {
                const base = window.heritageViewer.base();
                const a = base.imageToViewerElementCoordinates(new OpenSeadragon.Point(x0, y0));
                const b = base.imageToViewerElementCoordinates(new OpenSeadragon.Point(x1, y1));
                return [a.x, a.y, b.x, b.y];
            }""",
            list(bbox),
        )
        return (
            int(np.floor(corners[0])),
            int(np.floor(corners[1])),
            int(np.ceil(corners[2])),
            int(np.ceil(corners[3])),
        )


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
