"""A small synthetic ARTeFACT-format folder, generated deterministically from a seed (behind `data=sample`).

Textured "artwork" backgrounds with painted-on damage and exact masks, written through the same folder format
and read by the same reader as real data. Two profiles:
- `mixed` (the quick start): several damage classes per image, each with a distinct look, so a model must
  be able to learn them; thin classes (Hair, Scratch, Dust, Puncture) are rare, as on ARTeFACT.
- `thin`: the hard case real photographs showed: ONE thin damage class (2-3 px jagged dark lines, about 1 %
  of the pixels) on textured backgrounds that also hold thin *depicted* strokes which are not damage, every
  other class of the label map absent. Images are drawn at `image_px` so the lines stay 2-3 px wide at that
  training size (`data.image_size` equal to it means no resizing).
Raw mask values come from the label map, so any label map naming the painted classes works.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from heritage_seg.core.files import atomic_folder
from heritage_seg.data.labels import LabelMap

GENERATOR_VERSION = 2
PROFILES = ("mixed", "thin")
MATERIALS = ["Paper", "Parchment", "Canvas", "Glass", "Wood", "Textile"]
CONTENTS = ["Artistic depiction", "Photographic depiction", "Geometric patterns", "Line art"]
# damage name -> how it is painted (see _paint); every name must be a class in the label map
DAMAGES = [
    "Cracks",
    "Scratch",
    "Hair",
    "Dust",
    "Dirt",
    "Staining",
    "Material loss",
    "Peel",
    "Fold",
    "Writing",
    "Lightleak",
    "Puncture",
]
# How often each damage type is drawn, relative to the others: on ARTeFACT thin and small damage such as Hair,
# Dust and Puncture occurs in a few images only (shared pixel counts: Hair 0.007 %, Puncture 0.02 %), so a fold
# may hold none of it; Cracks is the common thin class.
RARITY = {"Cracks": 1.5, "Scratch": 0.6, "Hair": 0.2, "Dust": 0.3, "Puncture": 0.2}


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth colour field + a few soft shapes + fine grain: a stand-in for a painting or photograph."""
    base = rng.uniform(60, 200, size=3)
    coarse = rng.normal(0, 35, size=(4, 5, 3))
    field = np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    img = base + (field.astype(np.float64) - 128)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 8)):  # "depicted" shapes
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = rng.integers(min(w, h) // 10, min(w, h) // 3)
        color = tuple(int(c) for c in rng.integers(30, 230, size=3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=color)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=3))
    grain = rng.normal(0, 6, size=(h, w, 1))
    return np.clip(np.asarray(canvas, dtype=np.float64) + grain, 0, 255).astype(np.uint8)


def _polyline(rng, w, h, steps, step_len, start=None, angle=None, wiggle=0.4):
    x, y = start if start is not None else (rng.uniform(0, w), rng.uniform(0, h))
    a = rng.uniform(0, 2 * math.pi) if angle is None else angle
    pts = [(x, y)]
    for _ in range(steps):
        a += rng.normal(0, wiggle)
        x, y = x + step_len * math.cos(a), y + step_len * math.sin(a)
        pts.append((x, y))
    return pts


def _blob(rng, w, h, radius):
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    n = 12
    return [
        (
            cx + radius * rng.uniform(0.6, 1.3) * math.cos(2 * math.pi * k / n),
            cy + radius * rng.uniform(0.6, 1.3) * math.sin(2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _paint(kind: str, rng: np.random.Generator, img: Image.Image, mask: Image.Image, value: int) -> None:
    """Paint one damage type onto the image and the same pixels into the mask."""
    w, h = img.size
    s = min(w, h)
    thin = max(3, s // 90)
    # thin damage lines are 2-3 px wide at the quick start's 128 px (images are 256-512 px): thin, not sub-pixel
    line_px = max(3, round(2.5 * s / 128))
    di, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)

    def line(points, color, width):
        di.line(points, fill=color, width=width, joint="curve")
        dm.line(points, fill=value, width=width, joint="curve")

    def poly(points, color):
        di.polygon(points, fill=color)
        dm.polygon(points, fill=value)

    if kind == "Cracks":  # dark, branching, jagged
        for _ in range(rng.integers(1, 3)):
            trunk = _polyline(rng, w, h, 14, s / 20, wiggle=0.5)
            line(trunk, (25, 20, 15), line_px)
            for p in trunk[3::4]:
                line(_polyline(rng, w, h, 5, s / 30, start=p, wiggle=0.7), (25, 20, 15), line_px)
    elif kind == "Scratch":  # light, straight
        for _ in range(rng.integers(1, 4)):
            p = _polyline(rng, w, h, 1, s * rng.uniform(0.3, 0.7), wiggle=0)
            line(p, (235, 235, 225), line_px)
    elif kind == "Hair":  # dark, long, smoothly curved
        for _ in range(rng.integers(1, 3)):
            line(_polyline(rng, w, h, 30, s / 40, wiggle=0.12), (60, 40, 30), max(2, line_px - 1))
    elif kind == "Dust":  # small pale specks
        for _ in range(rng.integers(15, 40)):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(thin, 2 * thin)
            di.ellipse([x - r, y - r, x + r, y + r], fill=(220, 215, 205))
            dm.ellipse([x - r, y - r, x + r, y + r], fill=value)
    elif kind == "Dirt":  # dark brown blotches
        for _ in range(rng.integers(3, 8)):
            poly(_blob(rng, w, h, rng.uniform(s / 40, s / 18)), (70, 50, 25))
    elif kind == "Staining":  # large yellow-brown tide marks
        poly(_blob(rng, w, h, rng.uniform(s / 8, s / 5)), (190, 160, 80))
    elif kind == "Material loss":  # the support shows through: flat pale beige
        poly(_blob(rng, w, h, rng.uniform(s / 10, s / 6)), (240, 232, 210))
    elif kind == "Peel":  # lifted paint: magenta-shifted, dark rim
        pts = _blob(rng, w, h, rng.uniform(s / 10, s / 7))
        poly(pts, (200, 120, 200))
        di.line(pts + pts[:1], fill=(40, 10, 40), width=thin)
        dm.line(pts + pts[:1], fill=value, width=thin)
    elif kind == "Fold":  # straight band with highlight and shadow
        y0 = rng.uniform(0.2 * h, 0.8 * h)
        band = 3 * thin
        di.rectangle([0, y0 - band, w, y0], fill=(250, 250, 250))
        di.rectangle([0, y0, w, y0 + band], fill=(20, 20, 20))
        dm.rectangle([0, y0 - band, w, y0 + band], fill=value)
    elif kind == "Writing":  # blue ink zig-zag "script" in lines
        x0, y0 = rng.uniform(0.1 * w, 0.4 * w), rng.uniform(0.1 * h, 0.7 * h)
        for row in range(rng.integers(1, 4)):
            pts = [(x0 + k * s / 40, y0 + row * s / 12 + (s / 50) * (k % 2)) for k in range(rng.integers(6, 14))]
            line(pts, (20, 30, 140), thin)
    elif kind == "Puncture":  # a few small dark holes with a pale, torn rim
        for _ in range(rng.integers(1, 4)):
            x, y, r = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h), rng.uniform(thin, 1.6 * thin)
            di.ellipse([x - r - 2, y - r - 2, x + r + 2, y + r + 2], fill=(225, 215, 195))
            di.ellipse([x - r, y - r, x + r, y + r], fill=(15, 12, 10))
            dm.ellipse([x - r - 2, y - r - 2, x + r + 2, y + r + 2], fill=value)
    elif kind == "Lightleak":  # bright orange wash from one edge
        depth = int(rng.uniform(0.15, 0.3) * w)
        di.rectangle([w - depth, 0, w, h], fill=(255, 150, 40))
        dm.rectangle([w - depth, 0, w, h], fill=value)
    else:
        raise ValueError(f"sample data: no painter for damage '{kind}'")


def _draw_image(rng: np.random.Generator, labels: LabelMap) -> tuple[np.ndarray, np.ndarray]:
    raw_of = dict(zip(labels.names, labels.raw_values))
    w, h = int(rng.integers(256, 513)), int(rng.integers(256, 513))
    img = Image.fromarray(_background(rng, w, h))
    mask = Image.new("L", (w, h), raw_of[labels.clean_name])
    weights = np.array([RARITY.get(d, 1.0) for d in DAMAGES])
    for kind in rng.choice(DAMAGES, size=int(rng.integers(2, 5)), replace=False, p=weights / weights.sum()):
        _paint(str(kind), rng, img, mask, raw_of[str(kind)])
    if rng.random() < 0.3:  # a grey mount around the object: background, not annotated
        border = int(rng.integers(8, 24))
        ImageDraw.Draw(img).rectangle([0, 0, w - 1, h - 1], outline=(128, 128, 128), width=border)
        ImageDraw.Draw(mask).rectangle([0, 0, w - 1, h - 1], outline=labels.ignore_raw[0], width=border)
    return np.asarray(img), np.asarray(mask)


def _draw_thin_image(
    rng: np.random.Generator, labels: LabelMap, damage: str, size: int, coverage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Textured background with depicted strokes (not damage); jagged dark cracks over ~`coverage` of pixels
    in most images (some have none, as on real objects)."""
    raw_of = dict(zip(labels.names, labels.raw_values))
    img = Image.fromarray(_background(rng, size, size))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):  # depicted thin strokes: smooth curves in colour, NOT damage
        color = tuple(int(c) for c in rng.integers(20, 200, size=3))
        draw.line(
            _polyline(rng, size, size, 20, size / 25, wiggle=0.1),
            fill=color,
            width=int(rng.integers(1, 4)),
            joint="curve",
        )
    mask = Image.new("L", (size, size), raw_of[labels.clean_name])
    lines = Image.new("L", (size, size), 0)
    if rng.random() < 0.85:
        target = coverage * rng.uniform(0.5, 1.5) * size * size
        dm, dl = ImageDraw.Draw(mask), ImageDraw.Draw(lines)
        while (np.asarray(lines) > 0).sum() < target:  # branching, jagged, 2-3 px
            width = int(rng.integers(2, 4))
            trunk = _polyline(rng, size, size, 10, size / 24, wiggle=0.6)
            for points in [trunk] + [
                _polyline(rng, size, size, 4, size / 36, start=p, wiggle=0.8) for p in trunk[2::4]
            ]:
                dl.line(points, fill=255, width=width)
                dm.line(points, fill=raw_of[damage], width=width)
    darken = rng.uniform(0.35, 0.6)  # cracks darken what is under them: contrast depends on the background
    pixels = np.asarray(img, dtype=np.float64)
    pixels[np.asarray(lines) > 0] *= darken
    return np.clip(pixels, 0, 255).astype(np.uint8), np.asarray(mask)


def generate_sample(
    root: str | Path,
    labels: LabelMap,
    num_images: int = 48,
    num_augmented: int = 8,
    seed: int = 0,
    profile: str = "mixed",
    damage: str = "Cracks",
    image_px: int = 128,
    coverage: float = 0.01,
) -> Path:
    """Write the sample folder (once). `num_augmented` of the images are `<id>_aug1` flipped copies.
    `damage`, `image_px`, `coverage` apply to the thin profile."""
    root = Path(root).expanduser()
    if profile not in PROFILES:
        raise ValueError(f"data.sample.profile={profile}: choose one of {PROFILES}")
    if not 0 < coverage <= 0.2 or image_px < 32:
        raise ValueError(f"data.sample: coverage={coverage} must be in (0, 0.2] and image_px={image_px} >= 32")
    needed = [damage] if profile == "thin" else DAMAGES
    missing = [name for name in needed if name not in labels.names]
    if missing:
        raise ValueError(
            f"data.sample (profile {profile}) paints {missing}, which the label map does not have "
            f"(classes: {list(labels.names)}); pick data.sample.damage=<a class of the map> with "
            "data.sample.profile=thin, or use your own data with data.root=<folder>"
        )
    spec = {
        "generator_version": GENERATOR_VERSION,
        "num_images": num_images,
        "num_augmented": num_augmented,
        "seed": seed,
        "label_raw_values": list(labels.raw_values),
        "profile": profile,
    }
    if profile == "thin":
        spec.update(damage=damage, image_px=image_px, coverage=coverage)
    marker = root / "sample.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"data.root={root}: folder exists but does not hold this sample data ({marker.name} missing or "
            "different); it is left untouched. Point data.root at an empty or new folder."
        )
    if not 0 <= num_augmented < num_images:
        raise ValueError(f"data.sample: num_augmented={num_augmented} must be in [0, num_images={num_images})")
    with atomic_folder(root) as tmp:  # an empty root folder (checked above) is replaced
        (tmp / "images").mkdir()
        (tmp / "annotations").mkdir()
        n_sources = num_images - num_augmented
        rows = []
        for i in range(n_sources):
            rng = np.random.default_rng([seed, i])
            if profile == "thin":
                image, mask = _draw_thin_image(rng, labels, damage, image_px, coverage)
            else:
                image, mask = _draw_image(rng, labels)
            sid = f"sample_{i:03d}"
            copies = [(sid, image, mask)]
            if i < num_augmented:
                copies.append((f"{sid}_aug1", image[:, ::-1], mask[:, ::-1]))
            for cid, im, ma in copies:
                Image.fromarray(np.ascontiguousarray(im)).save(tmp / "images" / f"{cid}.png")
                Image.fromarray(np.ascontiguousarray(ma), mode="L").save(tmp / "annotations" / f"{cid}.png")
            rows.append({"id": sid, "material": MATERIALS[i % len(MATERIALS)], "content": CONTENTS[i % len(CONTENTS)]})
        with (tmp / "metadata.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "material", "content"])
            writer.writeheader()
            writer.writerows(rows)
        (tmp / "sample.json").write_text(json.dumps(spec))
    return root
