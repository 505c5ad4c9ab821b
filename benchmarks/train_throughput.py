"""Training and evaluation throughput: the real heritage_seg path against a bare PyTorch loop, in ONE run.

    python benchmarks/train_throughput.py                    # GPU: 384 px, batch 8; CPU: small settings
    python benchmarks/train_throughput.py --encoders convnext --image-size 128 --batch-size 4 --steps 10
    python benchmarks/train_throughput.py --images 418 --root /tmp/art418   # ARTeFACT-sized set, kept for reuse

For each encoder:
  (a) bare loop: same model, loss (with the same class weights), AdamW + OneCycle, autocast, gradient clipping;
      the batches are taken from the real loader once and already sit on the device;
  (b) heritage_seg: datamodule (preloaded uint8 data) + LightningModule (device-side augmentation) + Trainer,
      exactly as `heritage_seg.train` builds them, with logging, checkpoints and validation switched off;
  then evaluation images/s on the validation fold without and with TTA. Ratio (b)/(a) of training images/s
  (with --repeats R, each path is timed R times, alternating, and the medians are compared):
  1.0 means the framework and data pipeline cost nothing. Data: the project's sample data at --image-size
  (--images generated images; 418 = ARTeFACT's count, 279 train / 139 val, so that a batch of 32 is not a
  whole epoch), in --root if given (generated once, reused by later runs and by sweep_time.py --root).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import lightning as L
import torch

from heritage_seg.core.configs import compose
from heritage_seg.core.device import resolve_precision, with_autocast
from heritage_seg.core.files import write_json_atomic, write_text_atomic
from heritage_seg.data.labels import LabelMap
from heritage_seg.evaluation.scoring import run_evaluation
from heritage_seg.inference.tta import DEFAULT_TTA
from heritage_seg.training.build import build_training

REPO = Path(__file__).resolve().parents[1]


class StepTimer(L.Callback):
    """Wall time of training steps warmup..warmup+steps (device synchronised at both ends); with `profile`, those
    steps run under torch.profiler instead and its tables are written there (the time is then not comparable)."""

    def __init__(self, warmup: int, steps: int, profile: Path | None = None):
        self.warmup, self.steps, self.start, self.seconds = warmup, steps, None, None
        self.profile, self.profiler = profile, None

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self._sync(pl_module)
            if self.profile:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if pl_module.device.type == "cuda":
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.start()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup + self.steps:
            self._sync(pl_module)
            self.seconds = time.perf_counter() - self.start
            trainer.should_stop = True
            if self.profiler is not None:
                self.profiler.stop()
                averages = self.profiler.key_averages()
                tables = [
                    f"{self.steps} training steps of the real path, by {key}:\n"
                    + averages.table(sort_by=key, row_limit=25)
                    for key in ("self_cpu_time_total", "self_device_time_total")
                    if key == "self_cpu_time_total" or pl_module.device.type == "cuda"
                ]
                write_text_atomic(self.profile, "\n\n".join(tables))


def compose_cfg(encoder: str, args, root: Path, run_dir: Path):
    overrides = [
        f"encoder={encoder}",
        "experiment=sample",
        f"data.root={root}",
        f"data.image_size={args.image_size}",
        *([f"data.sample.num_images={args.images}"] if args.images else []),
        f"data.batch_size={args.batch_size}",
        f"run_dir={run_dir}",
        f"perf.compile={args.compile}",
    ]
    if args.channels_last is not None:
        overrides.append(f"perf.channels_last={args.channels_last}")
    if args.augment is not None:
        overrides.append(f"augment={args.augment}")
    return compose("train", overrides)


def bare_loop(model, loss_fn, mean, std, channels_last, batches, device, precision, steps, warmup) -> float:
    """Plain PyTorch on the same model/loss/optimiser: the floor the real path is compared with."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=warmup + steps + 1)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=precision == "16-mixed")
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        images, masks = batches[i % len(batches)]
        x = (images.float() - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), masks)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_encoder(encoder: str, args, root: Path, work: Path) -> dict:  # noqa: C901
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = str(resolve_precision("auto"))
    labels = LabelMap.from_config(compose_cfg(encoder, args, root, work).labels)
    result = {
        "encoder": encoder,
        "device": str(device),
        "precision": precision,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
    }

    # (b) the real path, as heritage_seg.train builds it
    cfg = compose_cfg(encoder, args, root, work / f"{encoder}_real")
    L.seed_everything(0)
    datamodule, module, _ = build_training(cfg, labels)
    profile = args.profile and args.profile.with_name(f"{args.profile.stem}_{encoder}{args.profile.suffix}")
    reals = [fit_real(module, datamodule, precision, args, profile)]
    if device.type == "cuda":
        result["peak_gpu_mib_real"] = round(torch.cuda.max_memory_allocated() / 2**20)

    # evaluation throughput on the validation fold (same module, eval mode, the training precision's autocast):
    # one untimed pass over the whole fold first, so every batch shape (the last batch is smaller) is warmed up
    module.eval().to(device)
    logits = with_autocast(module, device, "bf16" if precision == "bf16-mixed" else "32")
    for name, transforms in (("eval_images_per_s", ("identity",)), ("eval_tta_images_per_s", DEFAULT_TTA)):
        run_evaluation(logits, datamodule.full_val_dataloader(), 16, 255, transforms, device, keep_predictions=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run_evaluation(
            logits, datamodule.full_val_dataloader(), 16, 255, transforms, device, keep_predictions=False
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        result[name] = round(len(out.indices) / (time.perf_counter() - start), 2)

    # (a) bare loop: fresh module of the same config, uint8 batches from the real loader already on the device
    L.seed_everything(0)
    _, bare, _ = build_training(cfg, labels)
    bare.to(device)
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append((batch["image"].to(device), batch["mask"].to(device)))
        if len(batches) >= args.warmup + args.steps:
            break

    def bare_run() -> float:
        return bare_loop(
            bare.model,
            bare.loss,
            bare.pixel_mean,
            bare.pixel_std,
            bare.channels_last,
            batches,
            device,
            precision,
            args.steps,
            args.warmup,
        )

    bares = [bare_run()]
    for _ in range(args.repeats - 1):  # alternate, so that a drift of the machine hits both paths alike
        reals.append(fit_real(module, datamodule, precision, args))
        bares.append(bare_run())
    real, bare_seconds = statistics.median(reals), statistics.median(bares)
    images = args.steps * args.batch_size
    result.update(
        {
            "bare_images_per_s": round(images / bare_seconds, 2),
            "heritage_seg_images_per_s": round(images / real, 2),
            "ratio_real_over_bare": round(bare_seconds / real, 3),
            "real_seconds_runs": [round(t, 4) for t in reals],
            "bare_seconds_runs": [round(t, 4) for t in bares],
        }
    )
    return result


def fit_real(module, datamodule, precision: str, args, profile: Path | None = None) -> float:
    """Seconds of the timed steps of one Trainer.fit of the real path (logging, checkpoints, validation off)."""
    timer = StepTimer(args.warmup, args.steps, profile)
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        max_steps=args.warmup + args.steps + 1,
        gradient_clip_val=1.0,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["convnext", "mit_b3", "maxvit"])
    parser.add_argument("--image-size", type=int, default=384 if cuda else 128)
    parser.add_argument("--batch-size", type=int, default=8 if cuda else 4)
    parser.add_argument("--steps", type=int, default=50 if cuda else 6)
    parser.add_argument("--warmup", type=int, default=10 if cuda else 2)
    parser.add_argument("--images", type=int, default=None, help="generated images (default: the sample preset's)")
    parser.add_argument(
        "--root", type=Path, default=None, help="data folder, generated once and reused (default: a temporary one)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time each path this many times, alternating, "
        "and take the medians (short GPU runs at small batches are noisy)",
    )
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the real path's timed steps under torch.profiler and write its tables to "
        "<stem>_<encoder><suffix> (its ratio is then not a measurement)",
    )
    parser.add_argument("--channels-last", choices=["true", "false"], default=None, help="default: perf.channels_last")
    parser.add_argument(
        "--augment", choices=["tensor", "albumentations", "none"], default=None, help="default: the config's (tensor)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = args.root.expanduser().resolve() if args.root else work / "sample"
        results, failed = [], {}
        print(f"{'encoder':<10} {'bare img/s':>10} {'real img/s':>10} {'ratio':>6} {'eval img/s':>10} {'eval+TTA':>9}")
        for encoder in args.encoders:
            try:
                r = bench_encoder(encoder, args, root, work)
            except Exception as err:  # noqa: BLE001 - one encoder's failure must not cost the others' figures
                failed[encoder] = f"{type(err).__name__}: {err}"
                traceback.print_exc()
                continue
            results.append(r)
            print(
                f"{encoder:<10} {r['bare_images_per_s']:>10.2f} {r['heritage_seg_images_per_s']:>10.2f} "
                f"{r['ratio_real_over_bare']:>6.3f} {r['eval_images_per_s']:>10.2f} {r['eval_tta_images_per_s']:>9.2f}",
                flush=True,
            )
            save(args, results, failed)  # after each encoder: a run cut short keeps what it measured
    save(args, results, failed)
    if failed:
        sys.exit(f"train_throughput: {', '.join(failed)} failed")


def save(args, results: list[dict], failed: dict) -> None:
    if not args.out:
        return
    cuda = torch.cuda.is_available()
    payload = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "results": results,
        "failed": failed,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    write_json_atomic(args.out, payload)


if __name__ == "__main__":
    main()
