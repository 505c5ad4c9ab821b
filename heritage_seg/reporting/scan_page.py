"""predict's report.html: every scan of a batch on one page, to browse instead of opening four files per scan.

Per scan: a thumbnail of the overlay (embedded), the damaged share of the object, the share of each damage class
found, its largest regions, how uncertain the map is (with TTA or an ensemble), and links to the zoomable viewer and
the full-size files beside the page. The table is sorted by damaged share (largest first) and can be re-sorted by
any column in the browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.reporting.html import hex_color, thumbnail_uri
from heritage_seg.reporting.templating import render
from heritage_seg.runs.folder import SCAN_OUTPUTS


def _thumbnail(path: Path, max_side: int = 360) -> str:
    with Image.open(path) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of the size, fast for huge scans
        return thumbnail_uri(img.convert("RGB"), max_side)


def scan_rows(reports: Sequence[dict[str, Any]], out_dir: Path, labels: LabelMap) -> list[dict[str, Any]]:
    """What the page shows of each scan, largest damaged share first."""
    rows = []
    for report in sorted(reports, key=lambda r: -r["damage_total"]["percent_of_object"]):
        stem = report["outputs"]
        found = sorted(
            ((name, e) for name, e in report["damage"].items() if e["pixels"]), key=lambda item: -item[1]["pixels"]
        )
        overlay = out_dir / f"{stem}{SCAN_OUTPUTS['overlay']}"
        viewer = out_dir / f"{stem}{SCAN_OUTPUTS['viewer']}"
        rows.append(
            {
                "image": report["image"],
                "width": report["width"],
                "height": report["height"],
                "damaged": report["damage_total"]["percent_of_object"],
                "uncertainty": report.get("uncertainty"),
                "overlay": overlay.name,
                # what a click on the thumbnail opens; hrefs are URLs: a '#' or ' ' in a scan's name is quoted
                "open": quote(viewer.name if viewer.exists() else overlay.name),
                "thumbnail": Markup(_thumbnail(overlay)) if overlay.exists() else None,
                "classes": [
                    {
                        "name": name,
                        "color": hex_color(labels.palette()[labels.names.index(name)]),
                        "percent": e["percent_of_object"],
                        "regions": e["regions"],
                    }
                    for name, e in found
                ],
                "largest": [
                    {"name": name, "pixels": e["largest_region_pixels"], "bbox": e["largest_region_bbox"]}
                    for name, e in sorted(found, key=lambda item: -item[1]["largest_region_pixels"])[:3]
                ],
                "files": [
                    (kind, quote(stem + suffix))
                    for kind, suffix in SCAN_OUTPUTS.items()
                    if (out_dir / f"{stem}{suffix}").exists()
                ],
            }
        )
    return rows


def scan_report_html(
    reports: Sequence[dict[str, Any]], out_dir: Path, labels: LabelMap, failed: dict[str, str] | None = None
) -> str:
    """The whole page; `reports` are the scans' report.json payloads, their files in `out_dir`."""
    rows = scan_rows(reports, out_dir, labels)
    return render(
        "scan_report.html.j2",
        title="heritage_seg — damage maps",
        sortable=True,
        scans=rows,
        uncertainty=next((r["uncertainty"] for r in rows if r["uncertainty"]), None),
        top=5,
        failed=sorted((failed or {}).items()),
    )
