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
from urllib.parse import quote

import numpy as np
from PIL import Image

from heritage_seg.core.geometry import true_box

TILE_SIZE = 254  # + 1 px overlap on each side: 256 px tiles, Deep Zoom's usual size
# A layer no longer than this on its longest side is one picture, not a pyramid: the browser scales it at no cost
# (evaluate's panels, a stain's bounding box), and one file is ~10x cheaper to write than a pyramid's levels
SINGLE_IMAGE_MAX = 1024
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
    """One written layer, covering the scan's pixels [x, x + width) x [y, y + height): a Deep Zoom pyramid,
    `<folder>/<name>.dzi` and `<name>_files/<level>/<col>_<row>.<format>`, or (`single`) one picture
    `<folder>/<name>.<format>` for a layer of at most SINGLE_IMAGE_MAX px."""

    url: str  # relative to the page: the tiles folder ending in "/", or the picture
    format: str  # the tiles' file extension: "jpg" | "png"
    width: int
    height: int
    x: int = 0
    y: int = 0
    single: bool = False

    def tile_source(self) -> dict[str, Any]:
        """The .dzi descriptor as the object OpenSeadragon accepts inline: from `file://` the browser refuses to
        read the .dzi XML (no XHR on file URLs), while tiles load as plain images. A single picture: OpenSeadragon's
        plain-image source, one level (no pyramid built in the browser: that would read pixels back)."""
        if self.single:
            return {"type": "image", "url": self.url, "buildPyramid": False}
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
    options = "[Q=88,strip]" if fmt == "jpg" else "[compression=1,strip]"
    suffix = f".{fmt}{options}"
    single = max(image.width, image.height) <= SINGLE_IMAGE_MAX
    try:
        if single:
            image.write_to_file(str(folder / f"{name}{suffix}"))
        else:
            image.dzsave(
                str(folder / name),
                suffix=suffix,
                tile_size=TILE_SIZE,
                overlap=OVERLAP,
                depth="onepixel",  # Deep Zoom's levels go down to 1 x 1 px
                region_shrink=shrink,
            )
    except load_pyvips().Error as err:  # a full disk, an unwritable folder: an OSError like any other write's
        what = "picture" if single else "tiles"
        raise OSError(f"{folder / name}: writing the viewer's {what} failed: {err}") from err
    if single:
        return Pyramid(f"{url}{quote(name)}.{fmt}", fmt, image.width, image.height, x, y, single=True)
    props = folder / f"{name}_files" / "vips-properties.xml"
    props.unlink(missing_ok=True)  # libvips' metadata dump: nothing reads it
    return Pyramid(f"{url}{quote(name)}_files/", fmt, image.width, image.height, x, y)


def _from_array(array: np.ndarray):
    """A pyvips image over a C-contiguous uint8 (H, W) or (H, W, C) array, without copying it."""
    array = np.ascontiguousarray(array)
    bands = 1 if array.ndim == 2 else array.shape[2]
    return load_pyvips().Image.new_from_memory(array.data, array.shape[1], array.shape[0], bands, "uchar")


def rgb_pyramid(image: np.ndarray, folder: Path, name: str, url: str) -> Pyramid:
    """The scan itself (H, W, 3) uint8, as JPEG tiles."""
    return _save(_from_array(image).copy(interpretation="srgb"), folder, name, url, "jpg", "mean")


def _bbox(flags) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the non-zero pixels of a one-band uchar image that has some."""
    return tuple(int(v) for v in flags.find_trim(threshold=0.5, background=[0], line_art=True))


def coloured_pyramids(
    index: np.ndarray, colors: dict[int, tuple[int, int, int]], folder: Path, prefix: str, url: str
) -> dict[int, Pyramid]:
    """Per value v of `colors` present in the (H, W) uint8 `index` map: a layer of the bounding box of
    `index == v`, colour `colors[v]` where it holds and transparent elsewhere."""
    if max(index.shape) <= SINGLE_IMAGE_MAX:  # a small map (evaluate's panels): pictures, in NumPy and PIL
        present = np.flatnonzero(np.bincount(index.reshape(-1), minlength=256))
        return _small_layers(index, {v: c for v, c in colors.items() if v in present}, folder, prefix, url)
    vips = load_pyvips()
    whole = _from_array(index)
    # which values occur, in one streamed pass (np.bincount would cast the map to int64: 8 bytes a pixel)
    histogram = np.frombuffer(whole.hist_find().cast(vips.BandFormat.UINT).write_to_memory(), dtype=np.uint32)
    present = np.flatnonzero(histogram)
    written = {}
    for value, rgb in colors.items():
        if value not in present:
            continue
        flags = whole == value  # 255 where it holds, 0 elsewhere: the alpha band
        left, top, width, height = _bbox(flags)
        alpha = flags.crop(left, top, width, height)
        colour = alpha.new_from_image(list(rgb)).cast(vips.BandFormat.UCHAR)
        rgba = colour.bandjoin(alpha).copy(interpretation="srgb")
        written[value] = _save(rgba, folder, f"{prefix}{value:03d}", url, "png", "max", left, top)
    return written


def _small_layers(
    index: np.ndarray, colors: dict[int, tuple[int, int, int]], folder: Path, prefix: str, url: str
) -> dict[int, Pyramid]:
    """coloured_pyramids for a map of at most SINGLE_IMAGE_MAX px a side: the same pictures written without
    libvips, whose per-operation cost (~0.6 ms, ~8 operations a class) is most of the time at this size."""
    written = {}
    for value, rgb in colors.items():
        flags = index == value
        box = true_box(flags)
        top, left = box[0].start, box[1].start
        crop = flags[box]
        rgba = np.empty(crop.shape + (4,), np.uint8)
        rgba[..., :3] = rgb
        rgba[..., 3] = crop * np.uint8(255)
        name = f"{prefix}{value:03d}"
        try:
            Image.fromarray(rgba, "RGBA").save(folder / f"{name}.png", compress_level=1)
        except OSError as err:
            raise OSError(f"{folder / name}: writing the viewer's picture failed: {err}") from err
        written[value] = Pyramid(f"{url}{quote(name)}.png", "png", crop.shape[1], crop.shape[0], left, top, True)
    return written


def heat_pyramid(values: np.ndarray, lut: np.ndarray, folder: Path, name: str, url: str) -> Pyramid:
    """An (H, W) uint8 map (e.g. uncertainty x 255) coloured by a (256, 3) uint8 look-up table, its opacity the
    value itself: 0 is transparent, so low values leave the scan visible."""
    vips = load_pyvips()
    grey = _from_array(values)
    table = vips.Image.new_from_memory(np.ascontiguousarray(lut, dtype=np.uint8).data, 256, 1, 3, "uchar")
    rgba = grey.maplut(table).bandjoin(grey).copy(interpretation="srgb")
    return _save(rgba, folder, name, url, "png", "mean")
