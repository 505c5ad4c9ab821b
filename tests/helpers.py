"""Test-only callbacks, importable by Hydra through `+callbacks.<name>._target_=tests.helpers.<Class>`, the scan
folder predict/select/preannotate tests map, and the
check every HTML report page must pass."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

import lightning as L
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


def scan_folder(sample_root: Path, folder: Path, count: int = 1) -> Path:
    """`folder` holding copies of the first `count` images of the sample data: scans for predict, select and
    preannotate."""
    folder.mkdir(parents=True)
    for image in sorted((sample_root / "images").iterdir())[:count]:
        shutil.copy(image, folder / image.name)
    return folder
