"""Progressive resolution's data: one cache per stage size (what `data.progressive` does) or the final size's
cache resized on the fly every epoch? Measured, not assumed (issue 28).

    python benchmarks/progressive_data.py --out benchmarks/progressive_data_cpu.json

On `--images` generated scans of `--source-px` px (the quick start's generator), for the stages `--stages`
(size:epochs ...): (a) the seconds to build the earlier stages' caches with the project's cache builder (paid once,
then shared by every run on that data: every fold, encoder and seed); (b) the seconds to resize every training image
of the final-size cache to its stage's size on the fly (torch `interpolate`: bilinear with antialiasing for
images, nearest for masks, in batches of `--batch-size`, on this machine's device), times the earlier stages'
epochs, for ONE run. Both also per 1,000 images; the final size's cache is needed either way and is not counted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import artefact_labels, result_header

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import build_cache, load_cache
from heritage_seg.data.readers import open_reader
from heritage_seg.data.sample import generate_sample


def on_the_fly(images: np.ndarray, masks: np.ndarray, size: int, batch: int, device: torch.device) -> float:
    """Seconds to bring every image and mask of the final-size cache to `size`, batch by batch (one epoch)."""
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        x = torch.from_numpy(images[first : first + batch]).to(device).permute(0, 3, 1, 2).float()
        m = torch.from_numpy(masks[first : first + batch]).to(device)[:, None].float()
        F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).round().to(
            torch.uint8
        )
        F.interpolate(m, size=(size, size), mode="nearest").to(torch.uint8)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--source-px", type=int, default=1536, help="side of the generated scans")
    parser.add_argument("--stages", nargs="+", default=["256:10", "384:20", "512:20"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stages = [tuple(int(v) for v in s.split(":")) for s in args.stages]
    final = stages[-1][0]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    labels = artefact_labels()
    with tempfile.TemporaryDirectory(prefix="progressive_data_") as tmp:
        root = generate_sample(
            Path(tmp) / "data", labels, args.images, 0, seed=3, profile="thin", image_px=args.source_px
        )
        reader = open_reader(root)
        cache_dir = Path(tmp) / "cache"
        data = load_cache(build_cache(reader, Protocol("squash", final), labels, cache_dir))
        rows = []
        for size, epochs in stages[:-1]:
            start = time.perf_counter()
            build_cache(reader, Protocol("squash", size), labels, cache_dir)
            build = time.perf_counter() - start
            on_the_fly(data.images[: args.batch_size], data.masks[: args.batch_size], size, args.batch_size, device)
            per_epoch = on_the_fly(data.images, data.masks, size, args.batch_size, device)
            rows.append(
                {
                    "size": size,
                    "epochs": epochs,
                    "cache_build_seconds": round(build, 3),
                    "on_the_fly_seconds_per_epoch": round(per_epoch, 4),
                    "on_the_fly_seconds_per_run": round(per_epoch * epochs, 3),
                    "cache_build_seconds_per_1000_images": round(1000 * build / args.images, 1),
                    "on_the_fly_seconds_per_run_per_1000_images": round(1000 * per_epoch * epochs / args.images, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    build_total = sum(r["cache_build_seconds"] for r in rows)
    fly_total = sum(r["on_the_fly_seconds_per_run"] for r in rows)
    out = {
        **result_header(args),
        "stages": rows,
        "cache_build_seconds_total": round(build_total, 3),
        "on_the_fly_seconds_per_run_total": round(fly_total, 3),
        "runs_until_the_caches_cost_less": round(build_total / fly_total, 2) if fly_total else None,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "stages"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
