"""Peak memory and time of native-resolution scoring of one huge annotation (issue: evaluating a 12,000 x 9,000
image must stay within a few hundred MB beyond the model).

    python benchmarks/native_memory.py                          # 12000 x 9000, 16 classes, 384-px probabilities
    python benchmarks/native_memory.py --size 12000 9000 --out benchmarks/native_memory_cpu.json

Each case runs in a fresh process, so its peak RSS is its own. The mask and the output class map are allocated
before the baseline is read: what is reported is what the scoring itself adds (strips of upsampled
probabilities), next to what a whole-image `F.interpolate` of the 16-class float map would need.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_case(width: int, height: int, in_size: int, classes: int, keep_prediction: bool) -> dict:
    import numpy as np
    import torch

    from heritage_seg.evaluation.native import native_confusion

    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(classes, in_size, in_size, generator=generator).softmax(dim=0)
    mask = torch.from_numpy(np.random.default_rng(0).integers(0, classes, (height, width), dtype=np.uint8))
    prediction = np.zeros((height, width), dtype=np.uint8) if keep_prediction else None
    if prediction is not None:
        prediction[:] = 1  # touch the pages now, so they count in the baseline, not in the scoring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cm = native_confusion(probs, mask, classes, 255, prediction=prediction)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert int(cm.sum()) == width * height
    return {
        "width": width,
        "height": height,
        "probabilities": [classes, in_size, in_size],
        "keep_prediction": keep_prediction,
        "seconds": round(seconds, 2),
        "rss_growth_mib": round((peak - before) / 1024),
        "peak_rss_mib": round(peak / 1024),
        "whole_float_map_mib": round(classes * width * height * 4 / 2**20),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", nargs=2, type=int, default=[12000, 9000], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--in-size", type=int, default=384, help="side of the model's probability map")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one case, JSON on stdout
        print(json.dumps(run_case(*args.size, args.in_size, args.classes, bool(args.one))))
        return
    results = []
    for keep in (0, 1):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(keep),
            "--size",
            *map(str, args.size),
            "--in-size",
            str(args.in_size),
            "--classes",
            str(args.classes),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{r['width']} x {r['height']} native scoring (keep prediction: {bool(keep)}): {r['seconds']} s, "
            f"+{r['rss_growth_mib']} MiB peak RSS (a whole float map would be {r['whole_float_map_mib']} MiB)",
            flush=True,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": platform.processor() or platform.machine(),
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
