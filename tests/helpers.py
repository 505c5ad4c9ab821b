"""What tests share (test modules import from here, never from each other): test-only callbacks, importable by
Hydra through `+callbacks.<name>._target_=tests.helpers.<Class>`; the check every HTML report page must pass; the
scan folder predict/select/preannotate tests map; run folders and data sets made by hand."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image


def run_benchmark(script: str, args: str, timeout: int = 600) -> tuple[dict, str]:
    """Run `benchmarks/<script> <args>` (`--out` is added) as a user would, from the repository root; return the
    JSON it wrote and what it printed."""
    import json
    import subprocess
    import sys
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        proc = subprocess.run(
            [sys.executable, f"benchmarks/{script}", *args.split(), "--out", str(out)],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(out.read_text()), proc.stdout


class SimulatedPreemption(RuntimeError):
    pass


class StopAfterEpoch(L.Callback):
    """Kills training like a preemption would, once `epochs` epochs (and their checkpoints) are done."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.epochs:
            raise SimulatedPreemption(f"simulated preemption after epoch {trainer.current_epoch}")


class RecordSizes(L.Callback):
    """Records the side of the first training and validation batch of every epoch (class-level: the test reads
    it after `train` built the callback from the config)."""

    seen: ClassVar[list[tuple[str, int, int]]] = []  # (train | val, epoch, side)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            RecordSizes.seen.append(("train", trainer.current_epoch, int(batch["image"].shape[-1])))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            RecordSizes.seen.append(("val", trainer.current_epoch, int(batch["image"].shape[-1])))


class PoisonWeightsAtEpoch(L.Callback):
    """Makes the model diverge at the start of epoch `epoch` (its first weight becomes NaN), as a far too high
    learning rate would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class SlowEpochs(L.Callback):
    """Stretches every training epoch after the first by `seconds` in a SLURM job's first attempt
    (SLURM_RESTART_COUNT unset or 0), so that it outlives a short time limit with its first checkpoint saved
    early; the requeued attempt runs at full speed."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import os
        import time

        if trainer.current_epoch > 0 and os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
            time.sleep(self.seconds)


class RecordLearningRate(L.Callback):
    """Appends {epoch, global_step, lr, attempt} at the start of every training epoch to a JSON-lines file, which
    survives requeues: a resumed run's schedule can be compared with an uninterrupted one's."""

    def __init__(self, path: str):
        self.path = path

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import json
        import os

        if trainer.is_global_zero:
            record = {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "attempt": os.environ.get("SLURM_RESTART_COUNT", "0"),
            }
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.rows, self.scripts, self._row = [], [], [], [], None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append(attrs.get("data-sort"))
        elif tag == "script":
            self._in_script = True
            if attrs.get("src"):
                self.scripts.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None
        elif tag == "script":
            self._in_script = False


def check_html_page(path: Path) -> _Page:
    """Parse a report page as a browser would need it: every picture is embedded and decodes, or is a file
    beside the page; every link points at a file beside the page; no external script or resource."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.scripts, "no external scripts (no CDN)"
    assert "http://" not in text and "https://" not in text, "nothing fetched from the internet"
    for src in page.images:
        if src.startswith("data:"):
            header, data = src.split(",", 1)
            assert header.endswith(";base64")
            with Image.open(io.BytesIO(base64.b64decode(data))) as img:
                img.verify()
        else:
            assert (path.parent / src).is_file(), src
    for href in page.links:  # a link is a URL: "scan%20%231_mask.png" is the file "scan #1_mask.png"
        assert (path.parent / unquote(href)).is_file(), href
    return page


def cluster_up() -> bool:
    """A SLURM cluster answers and has a node up (tools/slurm_local.sh starts one; CI does)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a %T"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(re.search(r"^up (idle|mixed|allocated)", out, flags=re.M))


def scan_folder(
    sample_root: Path,
    folder: Path,
    sources: int | list[str] = 1,
    size: tuple[int, int] | None = None,
    names: list[str] | None = None,
) -> Path:
    """The one scan folder the tests map (predict, select, preannotate, the viewer): the first `sources` sample
    images (or those named), copied as they are, or resized to `size` (width, height) as RGB and saved as `names`
    (whose suffixes pick the formats: .tif, .jpg, .png). `folder` may exist already (tmp_path_factory.mktemp)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = (
        sorted((sample_root / "images").iterdir())[:sources]
        if isinstance(sources, int)
        else [sample_root / "images" / name for name in sources]
    )
    for k, image in enumerate(images):
        if size is None and names is None:
            shutil.copy(image, folder / image.name)
            continue
        with Image.open(image) as picture:
            rgb = picture.convert("RGB")
        (rgb.resize(size) if size else rgb).save(folder / (names[k] if names else image.name))
    return folder


# run folders and data sets made by hand, with known contents (aggregate, progressive and multitask rows; the
# readers and native scoring)
CLASSES = ["Clean", "Cracks"]


def fake_run(root, name, overrides, fold, miou, miou_tta=None, cracks=0.2, family="CNN"):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(f"fold: {fold}\n")
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides + [f"fold={fold}"]))

    def payload(value, tta):
        return {
            "miou": value,
            "pixel_accuracy": 0.9,
            "mean_dice": value + 0.1,
            "classes": CLASSES,
            "tta": tta,
            "per_class": {"Clean": {"iou": 0.9}, "Cracks": {"iou": cracks}},
            "encoder": overrides[0].split("=")[1] if overrides else "convnext",
            "family": family,
            "fold": fold,
            "n_folds": 3,
        }

    (run / "metrics.json").write_text(json.dumps(payload(miou, False)))
    if miou_tta is not None:
        (run / "metrics_tta.json").write_text(json.dumps(payload(miou_tta, True)))
    return run


def make_folder(root: Path, n: int = 4, size: int = 40, aug: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rows = ["id,material,content"]
    for i in range(n):
        image = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
        mask = np.zeros((size, size + 8), np.uint8)
        mask[: size // 2, :10] = 9  # raw 9 = Cracks
        mask[-3:, :] = 255  # unannotated border
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask, mode="L").save(root / "annotations" / f"img{i}.png")
        rows.append(f"img{i},Paper,Line art")
        if aug and i == 0:
            Image.fromarray(image[:, ::-1].copy()).save(root / "images" / f"img{i}_aug1.png")
            Image.fromarray(mask[:, ::-1].copy(), mode="L").save(root / "annotations" / f"img{i}_aug1.png")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def make_parquet_from_folder(folder: Path, out: Path) -> Path:
    """The Hugging Face schema: id, image/annotation as {bytes, path} structs, material, content."""
    ids = sorted(p.stem for p in (folder / "images").glob("*.png"))
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "id": pa.array(ids),
            "image": pa.array(
                [{"bytes": (folder / "images" / f"{i}.png").read_bytes(), "path": f"{i}.png"} for i in ids], struct
            ),
            "annotation": pa.array(
                [{"bytes": (folder / "annotations" / f"{i}.png").read_bytes(), "path": f"{i}.png"} for i in ids], struct
            ),
            "material": pa.array(["Paper"] * len(ids)),
            "content": pa.array(["Line art"] * len(ids)),
        }
    )
    (out / "data").mkdir(parents=True)
    half = len(ids) // 2  # two shards, as the hub has several
    pq.write_table(table.slice(0, half), out / "data" / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(half), out / "data" / "train-00001-of-00002.parquet")
    return out
