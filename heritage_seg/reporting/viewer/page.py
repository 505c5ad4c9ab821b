"""A viewer page: `<name>_viewer.html`, its pyramids in `<name>_viewer/` and the scripts it loads in
`viewer_assets/` beside it (OpenSeadragon with its licence and the page's own script, copied from the package:
nothing is fetched at view time, and the page opens from `file://` as well as over HTTP).

The pyramids are built in a temporary folder and renamed into place, then the page is written atomically: a
page never points at half-written tiles, and a rerun (overwrite=true) replaces both."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from heritage_seg.core.files import write_file_atomic, write_text_atomic
from heritage_seg.data.labels import LabelMap
from heritage_seg.reporting.html import hex_color
from heritage_seg.reporting.templating import render
from heritage_seg.reporting.viewer.pyramids import coloured_pyramids, heat_pyramid, load_pyvips, rgb_pyramid

ASSETS = "viewer_assets"
ASSET_FILES = ("openseadragon.min.js", "LICENSE-openseadragon.txt", "viewer.js", "viewer.css")
OSD_VERSION = "6.1.1"
DEFAULT_OPACITY = 0.7
MAX_REGIONS = 50


@dataclass
class ClassLayer:
    """A class map shown class by class (a prediction, an annotation): (H, W) uint8 class ids."""

    id: str
    name: str
    mask: np.ndarray
    visible: bool = True


@dataclass
class FlagLayer:
    """Where something holds (e.g. prediction != truth), in one colour: (H, W) bool."""

    id: str
    name: str
    flags: np.ndarray
    color: tuple[int, int, int] = (255, 0, 255)
    visible: bool = False


@dataclass
class HeatLayer:
    """A 0..255 map (uncertainty) in a colour scale, transparent where 0."""

    id: str
    name: str
    values: np.ndarray
    visible: bool = False


@dataclass
class ViewerContent:
    title: str
    image: np.ndarray  # (H, W, 3) uint8: the scan, the page's coordinates
    layers: Sequence[ClassLayer | FlagLayer | HeatLayer]
    regions: list[dict[str, Any]] = field(default_factory=list)  # {class, color, pixels, bbox [x0, y0, x1, y1]}
    dpi: float | None = None
    subtitle: str | None = None
    # {href, text}: href a file name relative to the page, as on disk (write_viewer makes it a URL: quoted)
    links: list[dict[str, str]] = field(default_factory=list)
    opacity: float = DEFAULT_OPACITY


def check_dpi(dpi: Any) -> float | None:
    """predict's `dpi=` option: the scan's resolution, for the viewer's millimetres (null: pixels only)."""
    if dpi is None:
        return None
    try:
        value = float(dpi)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"dpi={dpi}: the scans' resolution in dots per inch, a number > 0 (e.g. dpi=600), or null")
    return value


def check_pyvips() -> None:
    """Fail before any scan is mapped when the tile writer cannot load (viewer=false skips it)."""
    load_pyvips()


def tiles_folder(page: Path) -> Path:
    """`scan_viewer.html` -> `scan_viewer/`."""
    return page.with_suffix("")


def copy_assets(folder: Path) -> Path:
    """The page's scripts into `folder/viewer_assets/` (once per folder; replaced when the package's differ)."""
    target = folder / ASSETS
    target.mkdir(parents=True, exist_ok=True)
    static = resources.files("heritage_seg.reporting.viewer") / "static"
    for name in ASSET_FILES:
        data = (static / name).read_bytes()
        dest = target / name
        if not dest.is_file() or dest.read_bytes() != data:
            write_file_atomic(dest, lambda tmp, data=data: Path(tmp).write_bytes(data))
    return target


def heat_lut() -> np.ndarray:
    """(256, 3) uint8: matplotlib's `inferno`, dark for low values, yellow for high."""
    import matplotlib

    return (matplotlib.colormaps["inferno"](np.arange(256))[:, :3] * 255).round().astype(np.uint8)


def _write_layers(content: ViewerContent, labels: LabelMap, folder: Path, url: str) -> tuple[dict, list, list]:
    palette = labels.palette()
    damage = {c: tuple(int(v) for v in palette[c]) for c in labels.damage_ids()}
    base = rgb_pyramid(content.image, folder, "scan", url)
    layers, shown = [], set()
    for layer in content.layers:
        entry: dict[str, Any] = {"id": layer.id, "name": layer.name, "visible": layer.visible}
        if isinstance(layer, ClassLayer):
            pyramids = coloured_pyramids(layer.mask, damage, folder, f"{layer.id}_", url)
            shown.update(pyramids)
            entry.update(
                kind="classes",
                items=[{"class_id": c, "pyramid": p.to_dict()} for c, p in sorted(pyramids.items())],
            )
        elif isinstance(layer, FlagLayer):
            flags = np.ascontiguousarray(layer.flags, dtype=np.uint8) * np.uint8(255)
            pyramids = coloured_pyramids(flags, {255: layer.color}, folder, f"{layer.id}_", url)
            if not pyramids:
                continue  # nothing flagged: no empty layer to toggle
            entry.update(kind="flag", color=hex_color(layer.color), pyramid=pyramids[255].to_dict())
        else:
            pyramid = heat_pyramid(layer.values, heat_lut(), folder, layer.id, url)
            entry.update(kind="heat", pyramid=pyramid.to_dict())
        layers.append(entry)
    classes = [{"id": c, "name": labels.names[c], "color": hex_color(palette[c])} for c in sorted(shown)]
    return base.to_dict(), layers, classes


def write_viewer(page: Path, content: ViewerContent, labels: LabelMap) -> Path:
    """Write `page` (…_viewer.html), its pyramids and the assets; returns the page."""
    page = Path(page)
    folder = tiles_folder(page)
    copy_assets(page.parent)
    url = f"{quote(folder.name)}/"  # a scan named "recto #2.tif": '#' and ' ' must not end or break the URL
    build = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=page.parent))
    try:
        base, layers, classes = _write_layers(content, labels, build, url)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=page.parent))
            folder.replace(old / "tiles")
        build.replace(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    height, width = content.image.shape[:2]
    data = {
        "width": width,
        "height": height,
        "dpi": content.dpi,
        "opacity": content.opacity,
        "base": base,
        "layers": layers,
        "classes": classes,
        "regions": content.regions[:MAX_REGIONS],
    }
    html = render(
        "viewer.html.j2",
        title=content.title,
        subtitle=content.subtitle,
        links=[{"href": quote(link["href"]), "text": link["text"]} for link in content.links],
        assets=f"{ASSETS}/",
        osd_version=OSD_VERSION,
        data=data,
    )
    write_text_atomic(page, html)
    return page
