"""select's selection.html: the chosen scans in the order to annotate them, each with its thumbnail and its
uncertainty map, the parts of its score, and the scans left out and why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup
from matplotlib import colormaps
from PIL import Image

from heritage_seg.data.imageio import open_image, to_rgb
from heritage_seg.reporting.html import thumbnail_uri
from heritage_seg.reporting.templating import render


def _scan_thumbnail(path: Path, side: int = 320) -> Markup | None:
    try:
        with open_image(path, str(path)) as img:
            img.draft("RGB", (side, side))  # JPEG: decode at a fraction of the size
            return Markup(thumbnail_uri(to_rgb(img, str(path)), side))
    except (ValueError, OSError):
        return None


def _uncertainty_thumbnail(spread: np.ndarray, side: int = 320) -> Markup:
    colored = (colormaps["magma"](spread.astype(np.float32) / 255.0)[..., :3] * 255).astype(np.uint8)
    return Markup(thumbnail_uri(Image.fromarray(colored), side))


def selection_html(
    rows: Sequence[dict[str, Any]],
    paths: Sequence[Path],
    maps: Sequence[np.ndarray],
    skipped: Sequence[tuple[str, str]],
    cfg,
) -> str:
    chosen = [
        {**row, "thumbnail": _scan_thumbnail(path), "uncertainty_map": _uncertainty_thumbnail(spread)}
        for row, path, spread in zip(rows, paths, maps)
    ]
    return render(
        "selection.html.j2",
        title="heritage_seg — scans to annotate next",
        sortable=True,
        chosen=chosen,
        skipped=list(skipped),
        diversity=float(cfg.diversity),
        budget=int(cfg.budget),
    )
