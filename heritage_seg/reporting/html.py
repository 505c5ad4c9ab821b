"""Pictures embedded in self-contained pages (data URIs), so a report is one file that can be mailed or archived
alone. The pages themselves are Jinja2 templates (heritage_seg/reporting/templates/, rendered by templating.py)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def hex_color(rgb) -> str:
    """(r, g, b) -> "#rrggbb", as pages and legends write a colour."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(image: Image.Image | np.ndarray, max_side: int = 480) -> str:
    """A JPEG thumbnail (longest side at most `max_side`) as an embedded picture."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")
