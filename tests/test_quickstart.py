"""The README's quick start, run for real through `python -m heritage_seg.train experiment=quickstart` (shortened:
smaller images and crops, 10 epochs, validation after every epoch)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO


@pytest.mark.slow
def test_quickstart_learns_the_sample_data_and_fills_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "heritage_seg.train",
        "experiment=quickstart",
        f"data.root={tmp_path / 'sample'}",
        "data.max_side=128",
        "data.image_size=64",
        "trainer.max_epochs=10",
        "trainer.check_val_every_n_epoch=1",
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "best checkpoint:" in proc.stdout + proc.stderr
    # the printed evaluate command pastes as it is: one shell word per option, each a plain Hydra value
    (hint,) = re.findall(r"evaluate it: +(python -m heritage_seg\.evaluate .*)$", proc.stdout + proc.stderr, re.M)
    words = shlex.split(hint)
    assert OverridesParser.create().parse_override(words[3]).value() == str(run_dir / "checkpoints" / "best.ckpt")

    for name in (
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "splits.json",
        "class_weights.json",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
    ):
        assert (run_dir / name).is_file(), name
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # the preset writes last.ckpt every 10th epoch: the 10th is the last one here
    assert last["epoch"] == 9, "last.ckpt must be the end of the last epoch, whatever the best was"
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    miou = [e.value for e in events.Scalars("val/mIoU")]
    assert len(miou) == 10
    assert max(miou) > miou[0] + 0.05 and max(miou) > 2 * miou[0], f"val/mIoU did not rise: {miou}"
    assert "val/IoU/Clean" in events.Tags()["scalars"]
