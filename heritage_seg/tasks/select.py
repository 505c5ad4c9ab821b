"""What `python -m heritage_seg.select` does, as a function of its composed config (tests and benchmarks call it
directly). Which scans to annotate next:
    python -m heritage_seg.select ckpt=…/best.ckpt input=<folder of unannotated scans> budget=20

Each scan is mapped as predict maps it (same sizing, bounded memory; TTA views and/or ensemble members) for its
mean uncertainty, and looked at once by the encoder for its pooled features; scans already annotated are
skipped and cover the feature space; the rule (annotation/selection.py) picks `budget` of the rest."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from heritage_seg.annotation.selection import select_scans
from heritage_seg.core.files import save_image, write_text_atomic
from heritage_seg.data.imageio import list_inputs, to_rgb
from heritage_seg.data.readers import open_reader
from heritage_seg.inference.mapping import scan_scale
from heritage_seg.inference.segmenter import Segmenter, read_image
from heritage_seg.inference.uncertainty import check_views
from heritage_seg.reporting.select_page import selection_html
from heritage_seg.runs.claim import claim_output_dir
from heritage_seg.runs.folder import SELECTION_CSV, SELECTION_HTML, SELECTION_SKIPPED, SELECTION_UNCERTAINTY

log = logging.getLogger(__name__)
THUMBNAIL = 256  # side of the uncertainty maps kept per candidate for the page (bounded memory)
FIELDS = ["rank", "scan", "score", "uncertainty", "distance", "nearest", "path"]


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def annotated_root(setting, run_root: str | None) -> Path | None:
    """The annotated data to skip and cover: `auto` = the checkpoint's training data if it is here."""
    if setting is None or str(setting).lower() in ("null", "none"):
        return None
    if str(setting) == "auto":
        root = Path(str(run_root)).expanduser() if run_root else None
        if root is None or not root.exists():
            log.warning(
                "annotated=auto: the checkpoint's training data (%s) is not on this machine: no scan is skipped as "
                "annotated; pass annotated=<ARTeFACT-format folder> to skip and cover them",
                run_root,
            )
            return None
        return root
    root = Path(str(setting)).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"annotated={root}: no such folder; an ARTeFACT-format folder or parquet, or null")
    return root


def select(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    inputs = list_inputs(Path(str(cfg.input)).expanduser())
    segmenter = Segmenter.load(cfg.ckpt, cfg.device, bool(cfg.tta), cfg.precision)
    budget = int(cfg.budget)
    if budget < 1:
        raise ValueError(f"budget={cfg.budget}: choose at least one scan")
    try:
        check_views(len(segmenter.members) * len(segmenter.transforms))
    except ValueError:
        raise ValueError(
            "select ranks scans by how much the views disagree: pass tta=true or several checkpoints "
            "(ckpt=[a.ckpt,b.ckpt])"
        ) from None
    scan_scale(cfg.scale, segmenter.protocol, 1, 1)  # a bad scale fails before any folder is touched
    root = annotated_root(cfg.annotated, segmenter.members[0].run_config.data.get("root"))
    claim_output_dir(out_dir, cfg, (SELECTION_CSV,))

    covered, covered_ids, known_ids, known_hashes = [], [], set(), set()
    if root is not None:
        reader = open_reader(root)
        for record in reader.records():
            known_ids.update((record.id, record.source_id))
        if (root / "images").is_dir():
            known_hashes = {_sha1(p) for p in (root / "images").iterdir() if p.is_file()}
        for sample in tqdm(reader.samples(), desc="annotated", unit="img", leave=False):
            covered.append(segmenter.features(np.asarray(to_rgb(sample.image, sample.name))))
            covered_ids.append(sample.info.id)
        log.info("annotated: %d image(s) in %s cover the feature space and are skipped", len(covered), root)

    names, paths, uncertainty, features, maps, skipped = [], [], [], [], [], []
    for path in tqdm(inputs, desc="scans", unit="scan"):
        if path.stem in known_ids:
            skipped.append((path.name, f"annotated already: the annotated data has an image named {path.stem}"))
            continue
        if known_hashes and _sha1(path) in known_hashes:
            skipped.append((path.name, "annotated already: the same file is among the annotated images"))
            continue
        try:
            image, inside = read_image(path)
        except (ValueError, OSError) as err:  # one bad scan must not stop the others
            log.error("skipped %s: %s", path, err)
            skipped.append((path.name, f"unreadable: {err}"))
            continue
        # at the size the model worked at: enough to rank scans; a cut-out's transparent pixels count 0
        scan = segmenter.map(
            image, inside, cfg.scale, uncertainty=True, batch_size=int(cfg.batch_size), full_size=False
        )
        spread = scan.uncertainty
        object_pixels = scan.inside.sum() if scan.inside is not None else spread.size
        uncertainty.append(float(spread.sum()) / 255 / max(int(object_pixels), 1))
        features.append(segmenter.features(image))
        small = Image.fromarray(spread.astype(np.uint8))
        small.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
        maps.append(np.asarray(small))
        names.append(path.name)
        paths.append(path)
    if not names:
        raise ValueError(
            f"input={cfg.input}: no scan to choose from ({len(skipped)} skipped: annotated already or unreadable)"
        )
    picks = select_scans(
        np.asarray(uncertainty),
        np.stack(features),
        np.stack(covered) if covered else None,
        budget,
        float(cfg.diversity),
    )

    def nearest_name(nearest: int | None) -> str:
        if nearest is None:
            return ""
        return f"annotated:{covered_ids[-1 - nearest]}" if nearest < 0 else names[nearest]

    rows = [
        {
            "rank": p.rank,
            "scan": names[p.index],
            "score": round(p.score, 6),
            "uncertainty": round(p.uncertainty, 6),
            "distance": round(p.distance, 6),
            "nearest": nearest_name(p.nearest),
            "path": str(paths[p.index]),
        }
        for p in picks
    ]
    for p in picks:
        save_image(out_dir / SELECTION_UNCERTAINTY / f"{paths[p.index].stem}.png", maps[p.index])
    _write_csv(out_dir / SELECTION_CSV, FIELDS, rows)
    _write_csv(out_dir / SELECTION_SKIPPED, ["scan", "why"], [{"scan": s, "why": w} for s, w in skipped])
    write_text_atomic(
        out_dir / SELECTION_HTML,
        selection_html(rows, [paths[p.index] for p in picks], [maps[p.index] for p in picks], skipped, cfg),
    )
    log.info("chose %d of %d scan(s) (%d skipped) -> %s", len(rows), len(names), len(skipped), out_dir / SELECTION_CSV)
    return {"chosen": [r["scan"] for r in rows], "skipped": dict(skipped), "out_dir": str(out_dir)}


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
