"""predict's report.html: every scan of a batch on one page, to browse instead of opening four files per scan.

Per scan: a thumbnail of the overlay (embedded), the damaged share of the object, the share of each damage class
found, its largest regions, and links to the full-size files beside the page. The table is sorted by damaged
share (largest first) and can be re-sorted by any column in the browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.reporting.html import cell, esc, page, table, thumbnail_uri

OUTPUT_SUFFIXES = (
    ("overlay", "_overlay.jpg"),
    ("mask", "_mask.png"),
    ("confidence", "_confidence.png"),
    ("report", "_report.json"),
)


def _thumbnail(path: Path, max_side: int = 360) -> str:
    with Image.open(path) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of the size, fast for huge scans
        return thumbnail_uri(img.convert("RGB"), max_side)


def _swatch(labels: LabelMap, name: str) -> str:
    r, g, b = (int(v) for v in labels.palette()[labels.names.index(name)])
    return f'<span class="swatch" style="background:#{r:02x}{g:02x}{b:02x}"></span> '


def scan_rows(reports: Sequence[dict[str, Any]], out_dir: Path, labels: LabelMap, top: int = 5) -> list[list[str]]:
    rows = []
    for report in sorted(reports, key=lambda r: -r["damage_total"]["percent_of_object"]):
        stem = report["outputs"]
        found = sorted(
            ((name, e) for name, e in report["damage"].items() if e["pixels"]), key=lambda item: -item[1]["pixels"]
        )
        shares = "<br>".join(
            f"{_swatch(labels, name)}{esc(name)} {e['percent_of_object']:.2f} % "
            f"({e['regions']} region{'s' if e['regions'] != 1 else ''})"
            for name, e in found[:top]
        )
        largest = "<br>".join(
            f"{esc(name)}: {e['largest_region_pixels']:,} px at x {e['largest_region_bbox'][0]}–"
            f"{e['largest_region_bbox'][2]}, y {e['largest_region_bbox'][1]}–{e['largest_region_bbox'][3]}"
            for name, e in sorted(found, key=lambda item: -item[1]["largest_region_pixels"])[:3]
        )
        links = " · ".join(
            f'<a href="{esc(stem + suffix)}">{kind}</a>'
            for kind, suffix in OUTPUT_SUFFIXES
            if (out_dir / f"{stem}{suffix}").exists()
        )
        overlay = out_dir / f"{stem}_overlay.jpg"
        thumb = (
            (
                f'<a href="{esc(overlay.name)}"><img src="{_thumbnail(overlay)}" alt="overlay of '
                f'{esc(report["image"])}"></a>'
            )
            if overlay.exists()
            else ""
        )
        damaged = report["damage_total"]["percent_of_object"]
        rows.append(
            [
                cell(thumb, raw=True),
                cell(report["image"]),
                cell(f"{report['width']} × {report['height']}", sort=report["width"] * report["height"]),
                cell(f"{damaged:.2f} %", sort=damaged, numeric=True),
                cell(shares or "none found", sort=len(found), raw=True),
                cell(largest or "-", raw=True),
                cell(links, raw=True),
            ]
        )
    return rows


def scan_report_html(
    reports: Sequence[dict[str, Any]], out_dir: Path, labels: LabelMap, failed: dict[str, str] | None = None
) -> str:
    """The whole page; `reports` are the scans' report.json payloads, their files in `out_dir`."""
    intro = (
        f'<p class="note">{len(reports)} scan(s) mapped. Damaged share = damage pixels / object pixels (every '
        "pixel but the transparent ones of a cut-out: crop mounts and frames first for exact shares). Click a "
        "column header to sort; click a thumbnail for the full-size overlay.</p>"
    )
    body = intro + table(
        [
            "overlay",
            "scan",
            "size (px)",
            "damaged",
            "damage classes (share of the object)",
            "largest regions",
            "full-size files",
        ],
        scan_rows(reports, out_dir, labels),
        sortable=True,
    )
    if failed:
        body += "<h2>Scans that could not be read</h2>" + table(["scan", "error"], sorted(failed.items()))
    return page("heritage_seg — damage maps", body, script=True)
