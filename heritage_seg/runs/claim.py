"""Claiming a run or output folder: exactly one run writes into a folder, and a folder holding finished results
is never written into again (the run's `.hydra/` record is written only after the check)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from heritage_seg.runs.folder import CLAIM


def _take_claim(run_dir: Path, option: str, reclaim: bool) -> None:
    """Exclusive create: of two runs started at once into one folder exactly one gets it (checking for result
    files alone would let both pass, since those appear only after the data is prepared)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    claim = run_dir / CLAIM
    record = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.time(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
    )
    fd, tmp = tempfile.mkstemp(prefix=".claim-", dir=run_dir)
    with os.fdopen(fd, "w") as handle:
        handle.write(record)
    try:
        os.link(tmp, claim)  # atomic, fails if the claim exists, and the claim is complete when it appears
    except FileExistsError:
        if not reclaim:
            try:
                owner = json.loads(claim.read_text())
                who = f"process {owner.get('pid')} on {owner.get('host')}"
            except (OSError, ValueError):
                who = "another run"
            raise FileExistsError(
                f"{option}={run_dir}: already claimed by {who}, which writes its results there; it is left to "
                f"that run. Choose another {option} (the default folder name is unique per start), or, to continue "
                "an interrupted run there, pass resume=auto."
            ) from None
        os.replace(tmp, claim)  # the same job, requeued before it saved anything: it takes its folder back
    finally:
        Path(tmp).unlink(missing_ok=True)


def claim_output_dir(out_dir: Path, cfg: DictConfig, finished_markers: Sequence[str]) -> None:
    """The folder of a command with `output=` and `overwrite=` (predict, select, preannotate): with
    `overwrite=true` used as it is, else claimed like a run folder, the message naming the option that chose it."""
    if cfg.overwrite:
        out_dir.mkdir(parents=True, exist_ok=True)
        return
    claim_run_dir(
        out_dir,
        cfg,
        finished_markers=finished_markers,
        option="output" if cfg.output else "hydra.run.dir",
        remedy="pass overwrite=true to replace them, or choose another output=<folder>",
    )


def claim_run_dir(
    run_dir: Path,
    cfg: DictConfig,
    finished_markers: Sequence[str],
    option: str = "hydra.run.dir",
    remedy: str = "",
    reclaim: bool = False,
) -> None:
    """Refuse a folder holding any of `finished_markers` (globs), then write `.hydra/` into it.

    Hydra would write `.hydra/` before the task starts and so overwrite a finished run's record; the primary
    configs turn that off (hydra.output_subdir: null) and the same three files are written here, after the check.
    `option` is the setting the user passed to choose the folder, named in the message with `remedy`.
    `reclaim`: the folder may already be claimed by an earlier attempt of this same run (resume=auto).
    """
    existing = [p for pattern in finished_markers for p in sorted(run_dir.glob(pattern))]
    if existing:
        raise FileExistsError(
            f"{option}={run_dir}: already holds results ({existing[0].relative_to(run_dir)}); they are left "
            f"untouched. {remedy or f'Choose another {option} (or leave it out for a fresh timestamped folder).'}"
        )
    _take_claim(run_dir, option, reclaim)
    record = run_dir / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, record / "config.yaml")
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        OmegaConf.save(hydra_cfg, record / "hydra.yaml")
        OmegaConf.save(hydra_cfg.overrides.task, record / "overrides.yaml")
