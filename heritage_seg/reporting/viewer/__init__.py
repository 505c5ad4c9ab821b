"""The conservator's viewer: a scan and its maps as zoomable Deep Zoom layers in one HTML page (OpenSeadragon,
shipped in static/), written by predict per scan and by evaluate for its best/worst images."""

from heritage_seg.reporting.viewer.content import report_regions, scan_content, scored_content
from heritage_seg.reporting.viewer.page import ViewerContent, check_dpi, check_pyvips, tiles_folder, write_viewer

__all__ = [
    "ViewerContent",
    "check_dpi",
    "check_pyvips",
    "report_regions",
    "scan_content",
    "scored_content",
    "tiles_folder",
    "write_viewer",
]
