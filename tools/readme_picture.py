"""Remake the example picture of the documentation (docs/example_overlay.jpg) from a quick-start run.

    python tools/readme_picture.py outputs/<date>/<time> [--image sample_026] [--out docs/example_overlay.jpg]

Takes a validation image of the run (one the model never trained on; default: the validation image whose
annotation holds the most damage classes), maps it with the real `python -m heritage_seg.predict … tta=true`
and puts the image and predict's overlay side by side, so the picture shows what a user of the quick start gets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from heritage_seg.core.files import write_file_atomic
from heritage_seg.data.imageio import open_image, raw_mask_array, to_rgb
from heritage_seg.data.readers import IMAGE_EXTENSIONS


def most_damaged(root: Path, ids: list[str]) -> str:
    """The id whose annotation holds the most distinct raw values (damage classes, clean, background), read as
    the data set's readers read masks."""

    def classes(i: str) -> int:
        path = root / "annotations" / f"{i}.png"
        return len(np.unique(raw_mask_array(open_image(path, str(path), orient=False), str(path))))

    return max(ids, key=lambda i: (classes(i), i))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder of `python -m heritage_seg.train` (has splits.json)")
    parser.add_argument("--image", help="validation image id (default: the one with the most damage classes)")
    parser.add_argument("--out", type=Path, default=Path("docs/example_overlay.jpg"))
    parser.add_argument("--root", type=Path, help="the data folder (default: splits.json's, as the run saw it)")
    parser.add_argument("--height", type=int, default=360, help="height of the picture in pixels")
    args = parser.parse_args()

    splits = json.loads((args.run / "splits.json").read_text())
    root, val_ids = args.root or Path(splits["root"]), [i for i in splits["val_ids"] if i in splits["val_sources"]]
    if not (root / "annotations").is_dir():
        sys.exit(f"{root}: no annotations/ folder; run this where the training ran, or pass --root <data folder>")
    image_id = args.image or most_damaged(root, val_ids)
    if image_id not in splits["val_ids"]:
        sys.exit(f"--image {image_id}: not a validation image of {args.run} (choose from {', '.join(val_ids)})")
    scan = next(
        (p for p in sorted((root / "images").glob(f"{image_id}.*")) if p.suffix.lower() in IMAGE_EXTENSIONS), None
    )
    if scan is None:
        sys.exit(f"{root / 'images'}: no image {image_id}.* ({', '.join(IMAGE_EXTENSIONS)})")

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "heritage_seg.predict",
                f"ckpt={args.run / 'checkpoints' / 'best.ckpt'}",
                f"input={scan}",
                "tta=true",
                f"output={out}",
                f"hydra.run.dir={out}",
            ],
            check=True,
        )
        overlay = Image.open(Path(out) / f"{image_id}_overlay.jpg").convert("RGB")
        left = to_rgb(open_image(scan, scan.name), scan.name)
        width = round(left.width * args.height / left.height)
        right = overlay.resize((round(overlay.width * args.height / overlay.height), args.height), Image.LANCZOS)
        picture = Image.new("RGB", (width + 8 + right.width, args.height), "white")
        picture.paste(left.resize((width, args.height), Image.LANCZOS), (0, 0))
        picture.paste(right, (width + 8, 0))
        write_file_atomic(args.out, lambda tmp: picture.save(tmp, quality=88))
    print(f"{args.out}: {image_id} (validation image of {args.run}) and its overlay, tta=true")


if __name__ == "__main__":
    main()
