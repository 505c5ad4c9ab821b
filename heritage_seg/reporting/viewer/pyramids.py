"""Deep Zoom (DZI) image pyramids of a scan and its maps, the tiles the viewer page loads as one zooms in.

Written by libvips' `dzsave` through pyvips (its PyPI wheel ships the library): a maintained writer built for
whole-slide images, demand-driven, so a pyramid of a 12,000 x 9,000 layer is computed strip by strip instead of
as a whole RGBA copy per layer (benchmarks/predict_benchmark.py --scan-outputs records time and memory). Each
layer is built lazily from the uint8 arrays `predict` already holds: no per-layer full-size array in Python.

Layers of a class map are one pyramid per class present, cropped to that class's bounding box (placed at its
offset by the page), coloured with the label map's colour and transparent elsewhere: the page switches a class
off by hiding its pyramid, with no pixel work in the browser (which it could not do from `file://`: tiles read
from disk taint a canvas). Class pyramids shrink with `max`, so a one-pixel crack stays visible zoomed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TILE_SIZE = 254  # + 1 px overlap on each side: 256 px tiles, Deep Zoom's usual size
OVERLAP = 1
DZI_XMLNS = "http://schemas.microsoft.com/deepzoom/2008"


def load_pyvips():
    """pyvips, imported when a pyramid is written (loading libvips costs ~0.1 s a command need not pay)."""
    try:
        import pyvips
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "the viewer's tiles need pyvips with its library: pip install 'pyvips[binary]' "
            "(or pass viewer=false to write the masks only)"
        ) from err
    return pyvips


@dataclass(frozen=True)
class Pyramid:
    """One written pyramid: `<folder>/<name>.dzi` and `<name>_files/<level>/<col>_<row>.<format>`, covering the
    scan's pixels [x, x + width) x [y, y + height)."""

    url: str  # the tiles folder relative to the page, ending in "/"
    format: str  # the tiles' file extension: "jpg" | "png"
    width: int
    height: int
    x: int = 0
    y: int = 0

    def tile_source(self) -> dict[str, Any]:
        """The .dzi descriptor as the object OpenSeadragon accepts inline: from `file://` the browser refuses to
        read the .dzi XML (no XHR on file URLs), while tiles load as plain images."""
        return {
            "Image": {
                "xmlns": DZI_XMLNS,
                "Url": self.url,
                "Format": self.format,
                "Overlap": str(OVERLAP),
                "TileSize": str(TILE_SIZE),
                "Size": {"Width": str(self.width), "Height": str(self.height)},
            }
        }

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.tile_source(), "x": self.x, "y": self.y, "width": self.width, "height": self.height}


def _save(image, folder: Path, name: str, url: str, fmt: str, shrink: str, x: int = 0, y: int = 0) -> Pyramid:
    suffix = ".jpg[Q=88,strip]" if fmt == "jpg" else ".png[compression=1,strip]"
    try:
        image.dzsave(
            str(folder / name),
            suffix=suffix,
            tile_size=TILE_SIZE,
            overlap=OVERLAP,
            depth="onepixel",  # Deep Zoom's levels go down to 1 x 1 px
            region_shrink=shrink,
        )
    except load_pyvips().Error as err:  # a full disk, an unwritable folder: an OSError like any other write's
        raise OSError(f"{folder / name}: writing the viewer's tiles failed: {err}") from err
    props = folder / f"{name}_files" / "vips-properties.xml"
    props.unlink(missing_ok=True)  # libvips' metadata dump: nothing reads it
    return Pyramid(f"{url}{name}_files/", fmt, image.width, image.height, x, y)


def _from_array(array: np.ndarray):
    """A pyvips image over a C-contiguous uint8 (H, W) or (H, W, C) array, without copying it."""
    array = np.ascontiguousarray(array)
    bands = 1 if array.ndim == 2 else array.shape[2]
    return load_pyvips().Image.new_from_memory(array.data, array.shape[1], array.shape[0], bands, "uchar")


def rgb_pyramid(image: np.ndarray, folder: Path, name: str, url: str) -> Pyramid:
    """The scan itself (H, W, 3) uint8, as JPEG tiles."""
    return _save(_from_array(image).copy(interpretation="srgb"), folder, name, url, "jpg", "mean")


def _bbox(flags) -> tuple[int, int, int, int] | None:
    """(left, top, width, height) of the non-zero pixels of a one-band uchar image, None if it has none."""
    if flags.max() == 0:
        return None
    return tuple(int(v) for v in flags.find_trim(threshold=0.5, background=[0], line_art=True))


def coloured_pyramids(
    index: np.ndarray, colors: dict[int, tuple[int, int, int]], folder: Path, prefix: str, url: str
) -> dict[int, Pyramid]:
    """Per value v of `colors` present in the (H, W) uint8 `index` map: a PNG pyramid of the bounding box of
    `index == v`, colour `colors[v]` where it holds and transparent elsewhere."""
    vips = load_pyvips()
    whole = _from_array(index)
    written = {}
    for value, rgb in colors.items():
        flags = whole == value  # 255 where it holds, 0 elsewhere: the alpha band
        box = _bbox(flags)
        if box is None:
            continue
        left, top, width, height = box
        alpha = flags.crop(left, top, width, height)
        colour = alpha.new_from_image(list(rgb)).cast(vips.BandFormat.UCHAR)
        rgba = colour.bandjoin(alpha).copy(interpretation="srgb")
        written[value] = _save(rgba, folder, f"{prefix}{value:03d}", url, "png", "max", left, top)
    return written


def heat_pyramid(values: np.ndarray, lut: np.ndarray, folder: Path, name: str, url: str) -> Pyramid:
    """An (H, W) uint8 map (e.g. uncertainty x 255) coloured by a (256, 3) uint8 look-up table, its opacity the
    value itself: 0 is transparent, so low values leave the scan visible."""
    vips = load_pyvips()
    grey = _from_array(values)
    table = vips.Image.new_from_memory(np.ascontiguousarray(lut, dtype=np.uint8).data, 256, 1, 3, "uchar")
    rgba = grey.maplut(table).bandjoin(grey).copy(interpretation="srgb")
    return _save(rgba, folder, name, url, "png", "mean")
