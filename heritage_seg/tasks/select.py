"""What `python -m heritage_seg.select` does, as a function of its composed config (tests and benchmarks call it
directly). Which scans to annotate next:
    python -m heritage_seg.select ckpt=…/best.ckpt input=<folder of unannotated scans> budget=20

Each scan is mapped as predict maps it (same sizing, bounded memory; TTA views and/or ensemble members) for its
mean uncertainty, and looked at once by the encoder for its pooled features; scans already annotated are
skipped and cover the feature space; the rule (inference/acquisition.py) picks `budget` of the rest."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from heritage_seg.core.device import inference_precision, pick_device, with_autocast
from heritage_seg.core.files import save_image, write_text_atomic
from heritage_seg.data.imageio import list_inputs, object_mask, open_image, to_rgb
from heritage_seg.data.readers import open_reader
from heritage_seg.inference.acquisition import normalised, select_scans
from heritage_seg.inference.mapping import map_scan, scan_scale
from heritage_seg.inference.tta import resolve
from heritage_seg.inference.uncertainty import check_views
from heritage_seg.reporting.select_page import selection_html
from heritage_seg.runs.folder import (
    SAME_MAPPING,
    SELECTION_CSV,
    SELECTION_HTML,
    SELECTION_SKIPPED,
    SELECTION_UNCERTAINTY,
    claim_output_dir,
)
from heritage_seg.training.module import checkpoint_paths, load_members

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


def _features(members, image: np.ndarray, device) -> np.ndarray:
    """The ensemble's pooled encoder features of one scan squashed to the training size (each member's
    normalised, concatenated)."""
    size = members[0].protocol.image_size
    small = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
    batch = torch.from_numpy(small).permute(2, 0, 1)[None].to(device)
    return np.concatenate([normalised(m.pooled_features(batch).cpu().numpy())[0] for m in members])


def select(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    inputs = list_inputs(Path(str(cfg.input)).expanduser())
    ckpts = checkpoint_paths(cfg.ckpt)
    members = load_members(ckpts, SAME_MAPPING, "an ensemble maps with one label map and one way of sizing scans")
    budget = int(cfg.budget)
    if budget < 1:
        raise ValueError(f"budget={cfg.budget}: choose at least one scan")
    transforms = resolve(bool(cfg.tta))
    try:
        check_views(len(members) * len(transforms))
    except ValueError:
        raise ValueError(
            "select ranks scans by how much the views disagree: pass tta=true or several checkpoints "
            "(ckpt=[a.ckpt,b.ckpt])"
        ) from None
    device = pick_device(cfg.device)
    precision = inference_precision(cfg.precision, device)
    protocol, labels = members[0].protocol, members[0].labels
    scan_scale(cfg.scale, protocol, 1, 1)  # a bad scale fails before any folder is touched
    root = annotated_root(cfg.annotated, members[0].run_config.data.get("root"))
    claim_output_dir(out_dir, cfg, (SELECTION_CSV,))
    for member in members:
        member.to(device)

    covered, covered_ids, known_ids, known_hashes = [], [], set(), set()
    if root is not None:
        reader = open_reader(root)
        for record in reader.records():
            known_ids.update((record.id, record.source_id))
        if (root / "images").is_dir():
            known_hashes = {_sha1(p) for p in (root / "images").iterdir() if p.is_file()}
        for sample in tqdm(reader.samples(), desc="annotated", unit="img", leave=False):
            covered.append(_features(members, np.asarray(to_rgb(sample.image, sample.name)), device))
            covered_ids.append(sample.info.id)
        log.info("annotated: %d image(s) in %s cover the feature space and are skipped", len(covered), root)

    logits = [with_autocast(m, device, precision) for m in members]
    names, paths, uncertainty, features, maps, skipped = [], [], [], [], [], []
    for path in tqdm(inputs, desc="scans", unit="scan"):
        if path.stem in known_ids:
            skipped.append((path.name, f"annotated already: the annotated data has an image named {path.stem}"))
            continue
        if known_hashes and _sha1(path) in known_hashes:
            skipped.append((path.name, "annotated already: the same file is among the annotated images"))
            continue
        try:
            decoded = open_image(path, str(path))
            inside = object_mask(decoded)
            image = np.asarray(to_rgb(decoded, str(path)))
        except (ValueError, OSError) as err:  # one bad scan must not stop the others
            log.error("skipped %s: %s", path, err)
            skipped.append((path.name, f"unreadable: {err}"))
            continue
        height, width = image.shape[:2]
        scan = map_scan(
            image,
            logits,
            protocol,
            labels.num_classes,
            scan_scale(cfg.scale, protocol, width, height),
            transforms,
            True,
            device,
            batch_size=int(cfg.batch_size),
            full_size=False,
        )
        spread = scan.uncertainty
        if inside is not None:  # a cut-out's transparent pixels are not object
            inside = np.asarray(Image.fromarray(inside).resize(spread.shape[::-1], Image.Resampling.NEAREST))
            spread = np.where(inside, spread, 0)
        object_pixels = inside.sum() if inside is not None else spread.size
        uncertainty.append(float(spread.sum()) / 255 / max(int(object_pixels), 1))
        features.append(_features(members, image, device))
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
