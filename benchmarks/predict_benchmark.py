"""Time and peak memory of full-resolution damage mapping (sliding windows), with and without TTA.

    python benchmarks/predict_benchmark.py                       # 2048² and 4096², CPU or the GPU if there is one
    python benchmarks/predict_benchmark.py --sizes 1024 --out /tmp/bench.json
    python benchmarks/predict_benchmark.py --end-to-end 4096 4096 --out …   # the whole predict path, warm
    python benchmarks/predict_benchmark.py --scan-outputs 12000 9000 --noisy --out …  # + the viewer's tiles
    python benchmarks/predict_benchmark.py --end-to-end 12000 9000 --once --noisy --out …  # real U-Net, CPU

The viewer's tiles (predict viewer=true, the default) are measured in the --scan-outputs and --end-to-end cases:
their seconds beside the mapping's (report.json `seconds`), and the resident memory they add over what predict
holds when they start (sampled every 10 ms while they are written), against the size of the scan as RGBA.

Each case runs in a fresh process, so its peak RSS (and peak GPU memory) is its own. The model is a randomly
initialised U-Net of the chosen encoder: inference cost does not depend on the weights.
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


def measure_viewer(record: dict) -> None:
    """Wrap predict's viewer writer so that each call records its seconds and the resident memory it adds (the
    peak of /proc/self/statm sampled every 10 ms during the call, minus the value when it starts): ru_maxrss
    cannot tell, the mapping's peak comes first and is higher."""
    import os
    import threading

    import heritage_seg.tasks.predict as predict_task

    page_size = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page_size

    original = predict_task.write_viewer

    def wrapped(*args, **kwargs):
        start, peak, done = rss(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                done.wait(0.01)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            record["viewer_s"] = round(time.perf_counter() - began, 2)
            done.set()
            thread.join()
            record["viewer_rss_growth_mib"] = round((max(peak[0], rss()) - start) / 2**20)

    predict_task.write_viewer = wrapped


def tile_counts(folder: Path) -> dict:
    """The layers a viewer page got: pyramids and single pictures (layers of at most 1024 px), their files and
    bytes on disk."""
    if not folder.is_dir():
        return {}
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {
        "viewer_pyramids": len(list(folder.glob("*_files"))),
        "viewer_pictures": len([p for p in folder.iterdir() if p.suffix in (".png", ".jpg")]),
        "viewer_tiles": len(files),
        "viewer_mib_on_disk": round(sum(p.stat().st_size for p in files) / 2**20, 1),
    }


def run_case(size: int, tta: bool, encoder: str, window: int, batch_size: int, device: str) -> dict:
    import numpy as np
    import torch

    from heritage_seg.inference.sliding import count_windows, sliding_window_predict
    from heritage_seg.inference.tta import resolve
    from heritage_seg.models.unet import build_unet, normalisation

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    kwargs = {"img_size": window} if "maxvit" in encoder else {}
    model = build_unet(encoder, None, 16, kwargs).eval().to(dev)
    mean, std = (torch.tensor(v, device=dev).view(1, 3, 1, 1) * 255 for v in normalisation(encoder))
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    stride = round(window * 2 / 3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    sliding_window_predict(
        image,
        lambda x: model((x.float() - mean) / std),
        16,
        window,
        stride,
        batch_size,
        resolve(tta),
        "gaussian",
        dev,
        uncertainty=tta,  # as predict maps with tta=true: the views' disagreement too
    )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size": size,
        "tta": tta,
        "encoder": encoder,
        "window": window,
        "stride": stride,
        "batch_size": batch_size,
        "device": str(dev),
        "windows": count_windows(size, size, window, stride),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / 1024),
        "rss_growth_mib": round((peak - before) / 1024),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None,
        "full_probability_map_mib": round(16 * size * size * 4 / 2**20),
    }


def write_test_scan(path: Path, width: int, height: int, noisy: bool = False) -> None:
    """A smooth width x height JPEG, built in row strips (the parent process writes it, the child measures).
    `noisy`: per-pixel noise on top, so that the stand-in model's class map is as fragmented as a randomly
    initialised U-Net's (thousands of small regions: the costly case for the statistics and the PNGs)."""
    import numpy as np
    from PIL import Image

    scan = np.empty((height, width, 3), np.uint8)
    x = np.arange(width)
    rng = np.random.default_rng(0)
    for top in range(0, height, 512):
        y = np.arange(top, min(top + 512, height))[:, None]
        scan[top : top + 512, :, 0] = (x * 255 // width)[None, :]
        scan[top : top + 512, :, 1] = y * 255 // height
        scan[top : top + 512, :, 2] = (x[None, :] + y) % 256
        if noisy:
            strip = scan[top : top + 512].astype(np.int16) + rng.integers(-60, 61, scan[top : top + 512].shape)
            scan[top : top + 512] = strip.clip(0, 255)
    Image.fromarray(scan).save(path, quality=90)


def run_outputs_case(scan_path: Path, window: int) -> dict:
    """The whole `predict` path on one width x height scan (decode, sliding windows, mask/confidence PNGs,
    overlay JPEG, connected-component report) with a stand-in 1x1-convolution model, so what is measured is
    heritage_seg's own work around the network: its peak memory must grow with the scan's area only by the
    uint8 outputs (a few bytes per pixel), never by float copies of the whole scan."""
    import tempfile

    import torch
    from omegaconf import OmegaConf
    from PIL import Image

    from heritage_seg.core.protocol import Protocol
    from heritage_seg.data.labels import LabelMap
    from heritage_seg.inference.segmenter import Segmenter
    from heritage_seg.tasks.predict import predict_image

    labels = LabelMap.from_config(OmegaConf.load(REPO / "conf" / "labels" / "artefact.yaml"))
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, labels.num_classes, 1).eval()

    class StandIn:  # what a Segmenter reads of a trained model: logits, the protocol it was trained with, and
        # the temperature its logits are divided by (reported)
        protocol = Protocol("longest_side", window, 10**6)
        temperature = 1.0

        def __call__(self, x):
            return model(x.float() / 255.0)

    stand_in = StandIn()
    viewer: dict = {}
    measure_viewer(viewer)
    with Image.open(scan_path) as img:
        width, height = img.size
    defaults = OmegaConf.load(REPO / "conf" / "predict.yaml")  # every option predict reads, at its default
    cfg = OmegaConf.merge(defaults, {"scale": 1.0, "window": window, "stride": None, "tta": False, "batch_size": 8})
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        with torch.no_grad():
            report = predict_image(scan_path, Segmenter([stand_in], labels, "cpu", tta=False), cfg, Path(tmp))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tiles = tile_counts(Path(tmp) / f"{scan_path.stem}_viewer")
    pixels = width * height
    return {
        "case": "predict outputs",
        "width": width,
        "height": height,
        "windows": report["windows"],
        "seconds": round(seconds, 1),
        "stage_seconds": report["seconds"],
        "peak_rss_mib": round(peak / 1024),
        "rss_growth_mib": round((peak - before) / 1024),
        "growth_bytes_per_pixel": round((peak - before) * 1024 / pixels, 1),
        "float32_rgb_copy_of_the_scan_mib": round(pixels * 12 / 2**20),
        **viewer,
        **tiles,
        "rgba_copy_of_the_scan_mib": round(pixels * 4 / 2**20),
    }


def run_end_to_end_case(
    scan_path: Path, encoder: str, window: int, batch_size: int, device: str, once: bool = False
) -> dict:
    """The whole `predict` path on one scan (decode, sliding windows through a real U-Net, statistics, mask and
    confidence PNGs, overlay JPEG, report), warm: each setting maps the scan once untimed (CUDA context, cuDNN
    autotuning, allocator), then once timed. Precision as `predict precision=auto` picks it (bf16 autocast on GPUs
    that have it), windows as a crop-trained model at scale=1.0 gets them. The U-Net is randomly initialised: its
    cost does not depend on the weights. `stage_seconds` are predict's own per-scan laps (report.json). `once`:
    without TTA, one timed pass and no warm-up (the CPU has no autotuning to warm; a 12,000 x 9,000 scan takes
    minutes there)."""
    import tempfile

    import torch
    from omegaconf import OmegaConf

    from heritage_seg.core.configs import compose
    from heritage_seg.core.device import (
        describe_device,
        inference_precision,
        pick_device,
    )
    from heritage_seg.data.labels import LabelMap
    from heritage_seg.inference.segmenter import Segmenter
    from heritage_seg.models.unet import build_unet
    from heritage_seg.tasks.predict import predict_image
    from heritage_seg.training.module import SegmentationModule

    labels = LabelMap.from_config(OmegaConf.load(REPO / "conf" / "labels" / "artefact.yaml"))
    dev = pick_device(device)
    precision = inference_precision("auto", dev)
    torch.manual_seed(0)
    model = build_unet(encoder, None, labels.num_classes, {"img_size": window} if "maxvit" in encoder else {})
    run_config = compose(
        "train", ["run_dir=.", f"encoder.name={encoder}", "encoder.weights=null", f"data.image_size={window}"]
    )
    module = SegmentationModule(
        OmegaConf.to_container(run_config, resolve=True),
        model=model,
        channels_last=dev.type == "cuda",  # as perf.channels_last=auto trains it
        protocol={"resize": "longest_side", "image_size": window, "max_side": 10**6},
    )
    module.eval().to(dev)
    defaults = OmegaConf.load(REPO / "conf" / "predict.yaml")  # predict's own defaults: blend, stride, alpha
    cfg = OmegaConf.merge(defaults, {"scale": 1.0, "window": window, "batch_size": batch_size})
    cases = []
    viewer: dict = {}
    measure_viewer(viewer)
    with tempfile.TemporaryDirectory() as tmp:
        for tta in (False,) if once else (False, True):
            segmenter = Segmenter([module], labels, dev, precision, tta=tta)
            if not once:
                predict_image(scan_path, segmenter, cfg, Path(tmp), "warm")
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            report = predict_image(scan_path, segmenter, cfg, Path(tmp), "timed")
            seconds = time.perf_counter() - start
            stages = report["seconds"]
            cases.append(
                {
                    "tta": tta,
                    "seconds": round(seconds, 2),
                    "stage_seconds": stages,
                    "mapping_s": stages["mapping"],
                    "all_but_mapping_s": round(sum(v for k, v in stages.items() if k != "mapping"), 3),
                    "windows": report["windows"],
                    **viewer,
                    **tile_counts(Path(tmp) / "timed_viewer"),
                }
            )
    return {
        "case": "predict end to end, once" if once else "predict end to end, warm",
        "encoder": encoder,
        "width": report["width"],
        "height": report["height"],
        "window": window,
        "batch_size": batch_size,
        "device": describe_device(dev),
        "precision": report["precision"],
        "cases": cases,
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--encoder", default="tu-convnext_tiny")
    parser.add_argument("--window", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    for flag, what in (
        (
            "--scan-outputs",
            "peak memory of the whole predict path on one WIDTH x HEIGHT scan with a stand-in model (e.g. 12000 9000)",
        ),
        (
            "--end-to-end",
            "the whole predict path on one WIDTH x HEIGHT scan with a real U-Net of --encoder, warm, "
            "without and with TTA, and where its time goes",
        ),
    ):
        parser.add_argument(flag, nargs=2, type=int, metavar=("WIDTH", "HEIGHT"), help=f"instead: {what}")
    parser.add_argument("--once", action="store_true", help="--end-to-end: without TTA, once, no warm-up (CPU)")
    parser.add_argument(
        "--noisy",
        action="store_true",
        help="--scan-outputs / --end-to-end: a noisy test scan "
        "(a fragmented class map, as a randomly initialised U-Net gives)",
    )
    parser.add_argument("--one-e2e", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "TTA"), help=argparse.SUPPRESS)
    parser.add_argument("--one-scan", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_scan:  # child process: the predict path on one scan file, JSON on stdout
        print(json.dumps(run_outputs_case(args.one_scan, args.window)))
        return
    if args.one_e2e:  # child process: the end-to-end case on one scan file, JSON on stdout
        print(
            json.dumps(
                run_end_to_end_case(
                    args.one_e2e, args.encoder, args.window, args.batch_size, args.device, once=args.once
                )
            )
        )
        return
    if args.one:  # child process: one case, JSON on stdout
        print(
            json.dumps(
                run_case(int(args.one[0]), args.one[1] == "1", args.encoder, args.window, args.batch_size, args.device)
            )
        )
        return
    if args.scan_outputs or args.end_to_end:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            scan = Path(tmp) / "scan.jpg"
            write_test_scan(scan, *(args.scan_outputs or args.end_to_end), noisy=args.noisy)
            child = (
                ["--one-scan", str(scan)]
                if args.scan_outputs
                else [
                    "--one-e2e",
                    str(scan),
                    "--encoder",
                    args.encoder,
                    "--batch-size",
                    str(args.batch_size),
                    "--device",
                    args.device,
                    *(["--once"] if args.once else []),
                ]
            )
            proc = subprocess.run(
                [sys.executable, __file__, *child, "--window", str(args.window)], capture_output=True, text=True
            )
        if proc.returncode != 0:
            sys.exit(
                f"predict_benchmark: the measuring process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        for case in r.get("cases", []):
            print(
                f"{r['width']}x{r['height']} tta={str(case['tta']):5} {case['windows']:>4} windows  "
                f"{case['seconds']:>6.2f} s end to end: mapping {case['mapping_s']:.2f} s, all the rest "
                f"{case['all_but_mapping_s']:.2f} s {case['stage_seconds']}  ({r['device']}, {r['precision']})"
                + (
                    f"; viewer tiles {case['viewer_s']} s (+{case['viewer_rss_growth_mib']} MiB resident)"
                    if "viewer_s" in case
                    else ""
                )
            )
        print(json.dumps(r))
        if args.out:
            import torch

            machine = (
                torch.cuda.get_device_name()
                if torch.cuda.is_available() and args.end_to_end
                else (platform.processor() or platform.machine())
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps(
                    {
                        "date": time.strftime("%Y-%m-%d"),
                        "machine": machine,
                        "torch": torch.__version__ if args.end_to_end else None,
                        "results": [r],
                    },
                    indent=2,
                )
            )
        return
    results = []
    for size in args.sizes:
        for tta in (False, True):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(size),
                str(int(tta)),
                "--encoder",
                args.encoder,
                "--window",
                str(args.window),
                "--batch-size",
                str(args.batch_size),
                "--device",
                args.device,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"{r['size']:>5}² tta={str(r['tta']):5} {r['windows']:>4} windows  {r['seconds']:>8.1f} s  "
                f"peak RSS {r['peak_rss_mib']:>5} MiB (+{r['rss_growth_mib']} during mapping; a full float map "
                f"would be {r['full_probability_map_mib']} MiB)"
                + (f"  GPU {r['peak_gpu_mib']} MiB" if r["peak_gpu_mib"] is not None else ""),
                flush=True,
            )
    import torch

    payload = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
