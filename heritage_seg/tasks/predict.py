"""What `python -m heritage_seg.predict` does, as a function of its composed config (tests and benchmarks
call it directly). Map damage on new full-resolution scans:
    python -m heritage_seg.predict ckpt=…/best.ckpt input=scan.tif
    python -m heritage_seg.predict ckpt=…/best.ckpt input=folder/ tta=true

Per image: <name>_mask.png (class ids at full resolution, palette PNG), <name>_overlay.jpg, <name>_confidence.png
and <name>_report.json; report.csv and report.html (every scan on one page) for the whole run. One unreadable
file is reported and skipped."""

from __future__ import annotations

import csv
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from heritage_seg.core.device import (
    recorded_precision,
)
from heritage_seg.core.files import save_image, write_json_atomic, write_text_atomic
from heritage_seg.data.imageio import list_inputs
from heritage_seg.inference.mapping import scan_scale, uncertainty_views
from heritage_seg.inference.segmenter import Segmenter, read_image
from heritage_seg.reporting.damage import (
    CSV_FIELDS,
    binary_head_report,
    class_report,
    csv_rows,
    uncertainty_report,
)
from heritage_seg.reporting.figures import palette_mask, scan_overlay
from heritage_seg.reporting.scan_page import scan_report_html
from heritage_seg.reporting.viewer import check_dpi, check_pyvips, scan_content, write_viewer
from heritage_seg.runs.claim import claim_output_dir
from heritage_seg.runs.folder import FAILED_SCANS, SCAN_OUTPUTS, SCAN_REPORT_CSV, SCAN_REPORT_HTML
from heritage_seg.runs.records import ScanReport

log = logging.getLogger(__name__)


def output_stems(paths: list[Path]) -> dict[Path, str]:
    """`scan.tif` -> `scan`; when two inputs share a stem (scan.tif, scan.jpg) both keep their type: scan_tif."""
    stems = [p.stem for p in paths]
    return {p: p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in paths}


def predict_image(
    path: Path,
    segmenter: Segmenter,
    cfg: DictConfig,
    out_dir: Path,
    stem_name: str | None = None,
) -> dict[str, Any]:
    clock = time.perf_counter()
    seconds: dict[str, float] = {}  # where a scan's time goes (report.json): decode, mapping, statistics, files

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    labels = segmenter.labels
    # turned as its EXIF orientation says (as every viewer shows it); a cut-out's transparent pixels are not object
    image, inside = read_image(path)
    height, width = image.shape[:2]
    lap("decode")
    sliding = {"window": cfg.window, "stride": cfg.stride, "batch_size": int(cfg.batch_size), "blend": str(cfg.blend)}
    options = {"inside": inside, "scale": cfg.scale, **sliding}
    squash = scan_scale(cfg.scale, segmenter.protocol, width, height) == "squash"
    with tqdm(desc=path.name, unit="win", leave=False, disable=squash) as bar:
        maps = segmenter.map(
            image,
            uncertainty=cfg.uncertainty,
            **options,
            on_windows_done=bar.update,
            on_windows_total=lambda total: setattr(bar, "total", total),
        )
    mask, confidence, spread, views = maps.classes, maps.confidence, maps.uncertainty, maps.views
    head_damage = None
    if cfg.binary_map:  # the damage/clean head of heads=multitask, mapped as the fine classes were (a second pass)
        head_damage = segmenter.map(image, head="binary", **options).classes == 1
    lap("mapping")

    stem = out_dir / (stem_name or path.stem)
    # PIL encodes PNG/JPEG with the GIL released: the two PNGs are written while the statistics are counted,
    # the overlay JPEG while they finish (on a GPU the files cost far more than the mapping done before them)
    with ThreadPoolExecutor(max_workers=3) as pool:
        written = [
            pool.submit(save_image, Path(f"{stem}{SCAN_OUTPUTS['mask']}"), palette_mask(mask, labels)),
            pool.submit(save_image, Path(f"{stem}{SCAN_OUTPUTS['confidence']}"), Image.fromarray(confidence, mode="L")),
        ]
        if spread is not None:
            uncertainty_png = Image.fromarray(spread, mode="L")
            written.append(pool.submit(save_image, Path(f"{stem}{SCAN_OUTPUTS['uncertainty']}"), uncertainty_png))
        if head_damage is not None:
            binary_png = Image.fromarray(head_damage.astype(np.uint8) * 255, mode="L")
            written.append(pool.submit(save_image, Path(f"{stem}{SCAN_OUTPUTS['binary']}"), binary_png))
        classes = class_report(mask, labels)
        if head_damage is not None:
            classes["binary_head"] = binary_head_report(head_damage, mask, labels)
        if spread is not None:
            classes["uncertainty"] = uncertainty_report(mask, spread, labels, float(cfg.uncertain_above), views)
        lap("statistics")
        present = [labels.names.index(name) for name, entry in classes["damage"].items() if entry["pixels"]]
        overlay = scan_overlay(image, mask, confidence, labels, float(cfg.overlay_alpha), present)
        written.append(pool.submit(save_image, Path(f"{stem}{SCAN_OUTPUTS['overlay']}"), overlay))
        for future in written:
            future.result()  # a failed write raises here (each file is atomic: none is left half-written)
    lap("overlay_and_files")  # what the statistics did not overlap: the overlay, and the files still encoding
    viewer = Path(f"{stem}{SCAN_OUTPUTS['viewer']}") if cfg.viewer else None
    dpi = check_dpi(cfg.dpi)
    if viewer is not None:  # the zoomable page: the scan and its maps as tiled layers
        links = [{"href": SCAN_REPORT_HTML, "text": "all scans (report.html)"}]
        links += [{"href": f"{stem.name}{SCAN_OUTPUTS[k]}", "text": k} for k in ("mask", "overlay", "report")]
        content = scan_content(path.name, image, mask, labels, classes, spread, dpi, links)
        try:
            write_viewer(viewer, content, labels)
        except OSError as err:  # the page is a view of the maps: without it the masks and reports still stand
            log.error("%s: no viewer page (%s); its masks and report are written", path.name, err)
            viewer = None
        lap("viewer")
    report = {
        "image": path.name,
        "outputs": stem.name,
        "source": str(path),
        "width": width,
        "height": height,
        "scale": maps.scale,
        "protocol": segmenter.protocol.resize,
        "window": maps.window,
        "stride": maps.stride,
        "windows": maps.windows,
        "tta": segmenter.tta,
        "checkpoints": segmenter.sources,
        "temperature": segmenter.members[0].temperature,
        "precision": recorded_precision(segmenter.precision),
        "dpi": dpi,
        "viewer": viewer.name if viewer is not None else None,
        "seconds": seconds,
        **classes,
    }
    ScanReport.from_dict(report, strict=True).write(Path(f"{stem}{SCAN_OUTPUTS['report']}"))
    return report


def predict(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    inputs = list_inputs(Path(str(cfg.input)).expanduser())
    # bad checkpoints, device and precision options fail before any folder is touched
    segmenter = Segmenter.load(cfg.ckpt, cfg.device, bool(cfg.tta), cfg.precision)
    labels = segmenter.labels
    uncertainty_views(cfg.uncertainty, len(segmenter.members), len(segmenter.transforms))  # a bad option fails here
    without = segmenter.without_head("binary")
    if cfg.binary_map and without:
        raise ValueError(
            f"binary_map=true maps the damage/clean head of a model trained with heads=multitask; {', '.join(without)} "
            f"has none. Every scan's damage from the fine classes (all but '{labels.clean_name}') is in its "
            f"{SCAN_OUTPUTS['mask']} already"
        )
    check_dpi(cfg.dpi)
    if cfg.viewer:
        check_pyvips()
    squash = scan_scale(cfg.scale, segmenter.protocol, 1, 1) == "squash"  # so does a bad scale
    if squash and (cfg.window or cfg.stride):
        raise ValueError(
            "window=/stride= size sliding windows, but this squash-trained model maps each scan in one "
            "squashed pass (scale=auto); pass scale=<factor> (e.g. scale=1.0) to map by sliding windows"
        )
    claim_output_dir(out_dir, cfg, (SCAN_REPORT_CSV, f"*{SCAN_OUTPUTS['report']}", f"*{SCAN_OUTPUTS['mask']}"))
    if squash:
        size = segmenter.protocol.image_size
        log.warning(
            "this model was trained on whole images squashed to %d x %d px: no single scale matches a scan's "
            "pixels, so each scan is squashed the same way and its class probabilities are upsampled to the "
            "scan's size (what native-resolution evaluation scores). scale=<factor> maps by sliding windows "
            "instead; a model trained with data=artefact_crops has one pixel density to match.",
            size,
            size,
        )
    done, failed, rows, reports = [], {}, [], []
    stems = output_stems(inputs)
    for path in tqdm(inputs, desc="images", unit="img", disable=len(inputs) == 1):
        try:
            report = predict_image(path, segmenter, cfg, out_dir, stems[path])
        except (ValueError, FileNotFoundError, OSError) as err:  # one bad scan must not stop the others
            failed[str(path)] = str(err)
            log.error("skipped %s: %s", path, err)
            continue
        done.append(path.name)
        reports.append(report)
        rows.extend(csv_rows(report))
        log.info(
            "%s: %.2f%% damaged (%d x %d px) -> %s",
            path.name,
            report["damage_total"]["percent_of_object"],
            report["width"],
            report["height"],
            out_dir,
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / SCAN_REPORT_CSV, buffer.getvalue())
    write_text_atomic(out_dir / SCAN_REPORT_HTML, scan_report_html(reports, out_dir, labels, failed))
    if failed:
        write_json_atomic(out_dir / FAILED_SCANS, failed)
        log.error("%d of %d image(s) failed; see %s", len(failed), len(inputs), out_dir / FAILED_SCANS)
    if not done:
        raise ValueError(f"input={cfg.input}: no image could be mapped ({len(failed)} failed)")
    return {"done": done, "failed": failed, "out_dir": str(out_dir)}
