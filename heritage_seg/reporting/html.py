"""Self-contained HTML pages for the study and scan reports: one file, pictures embedded as data URIs, one small
inline script (sorting a table by a column), no web server, no internet, no CDN.

Written by hand with the standard library: the reports need tables, pictures and links, not a template engine.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from heritage_seg.reporting.figures import plt

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } table.sortable th { cursor: pointer; } td.num { text-align: right; }
.note { color: #555; font-size: 0.9em; } .warn { color: #a30000; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; } figcaption { font-size: 0.85em; }
img { max-width: 100%; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #888; vertical-align: middle; }
"""

# Click a header to sort by that column (numbers as numbers); click again to reverse.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), down = th.dataset.dir !== "desc";
      var key = function (row) { var v = row.cells[col].dataset.sort || row.cells[col].textContent;
                                 var n = parseFloat(v); return isNaN(n) ? v : n; };
      rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (down ? -1 : 1); });
      th.dataset.dir = down ? "desc" : "asc";
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure_uri(fig) -> str:
    """A matplotlib figure as an embedded PNG (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return data_uri(buffer.getvalue())


def thumbnail_uri(image: Image.Image | np.ndarray, max_side: int = 480) -> str:
    """A JPEG thumbnail (longest side at most `max_side`) as an embedded picture."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")


def cell(value: object, sort: float | str | None = None, numeric: bool = False, raw: bool = False) -> str:
    """One <td>: `sort` is what sorting compares (e.g. the number behind '12.3 ± 0.4'); `raw` keeps HTML."""
    attrs = (' class="num"' if numeric else "") + (f' data-sort="{esc(sort)}"' if sort is not None else "")
    return f"<td{attrs}>{value if raw else esc(value)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], sortable: bool = False) -> str:
    """`rows` hold cells made by `cell` (strings starting with <td), or plain values (escaped here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(c if str(c).startswith("<td") else cell(c) for c in row) + "</tr>" for row in rows
    )
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def image(uri: str, alt: str, caption: str | None = None) -> str:
    img = f'<img src="{uri}" alt="{esc(alt)}">'
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>" if caption else img


def page(title: str, body: str, script: bool = False) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{body}\n"
        + (f"<script>{SORT_SCRIPT}</script>\n" if script else "")
        + "</body></html>\n"
    )
