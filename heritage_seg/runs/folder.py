"""The run folder: what every command writes, under which names, what identifies a run, and claiming a folder.

The run folder is the contract between training and everything after it (evaluate, aggregate, resume): later
tools read what a run wrote and never re-derive it. The names of every output of every command live here and
nowhere else, except that conf/callbacks/default.yaml spells checkpoints/{best,last}.ckpt for Lightning's
ModelCheckpoint (tests/test_config.py checks the two agree). What the JSON files hold: heritage_seg.runs.records.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.configs import compose

# What a run folder holds
CONFIG_DIR = ".hydra"  # config.yaml (resolved run config), hydra.yaml, overrides.yaml
CONFIG = f"{CONFIG_DIR}/config.yaml"
OVERRIDES = f"{CONFIG_DIR}/overrides.yaml"
CHECKPOINTS = "checkpoints"
BEST = f"{CHECKPOINTS}/best.ckpt"  # best `monitor` so far
LAST = f"{CHECKPOINTS}/last.ckpt"  # rewritten every epoch: what resume continues from
SPLITS = "splits.json"  # the fold's train/val ids: evaluate and aggregate read it
CLASS_WEIGHTS = "class_weights.json"
METRICS = "metrics.json"  # the end-of-fit (or evaluate) report; its presence = finished
METRICS_TTA = "metrics_tta.json"
FINISHED = "finished.json"  # fit ended normally: resume=auto|true leave the run as it is
CLAIM = ".claim"  # created exclusively by the run that owns the folder

# What `evaluate` writes into its folder (besides .hydra/ and metrics.json)
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
CLASS_DISTRIBUTION_PNG = "class_distribution.png"
IOU_PER_CLASS_PNG = "iou_per_class.png"
PREDICTIONS = "predictions"  # best01_<id>_{input,gt,pred,overlay}.png ... worst01_<id>_...
PREDICTED_MASKS = f"{PREDICTIONS}/masks"  # <id>.png: the class ids that were scored
PREDICTED_UNCERTAINTY = f"{PREDICTIONS}/uncertainty"  # <id>.png: the views' disagreement x 255 (TTA / ensemble)
CALIBRATED_CKPT = "calibrated.ckpt"  # evaluate calibrate=true: the checkpoint with its fitted temperature
RELIABILITY_PNG = "reliability.png"  # the softmax's reliability diagram, and error rate per uncertainty bin
EVALUATION_SUBDIR = "evaluate"  # where the study page suggests `evaluate` writes inside a run (hydra.run.dir=)
# the files of one panel, <kind><rank>_<id><suffix>.png: what each shows (gt and pred are palette PNGs of class ids)
PANEL_FILES = {"image": "_input", "truth": "_gt", "prediction": "_pred", "overlay": "_overlay"}
VIEWER_SUFFIX = "_viewer.html"  # a zoomable viewer page (reporting/viewer), its tiles in the folder of its stem
PANEL_GLOBS = (  # the best and worst overlay panels, in a run folder or an evaluation folder inside it
    f"{PREDICTIONS}/best01_*_overlay.png",
    f"{PREDICTIONS}/worst01_*_overlay.png",
    f"*/{PREDICTIONS}/best01_*_overlay.png",
    f"*/{PREDICTIONS}/worst01_*_overlay.png",
)

# What `predict` writes: per scan <stem><suffix>, and per batch
SCAN_OUTPUTS = {
    "overlay": "_overlay.jpg",
    "mask": "_mask.png",
    "confidence": "_confidence.png",
    "uncertainty": "_uncertainty.png",  # with tta=true or an ensemble: how much the views disagree
    "binary": "_binary.png",  # binary_map=true: the damage/clean head of heads=multitask (255 = damage)
    "report": "_report.json",
    "viewer": VIEWER_SUFFIX,  # viewer=true (the default): zoomable layers; its tiles in <name>_viewer/
}
# What `select` writes: the ranked choice, its page, the chosen scans' uncertainty maps, the scans left out
SELECTION_CSV = "selection.csv"
SELECTION_HTML = "selection.html"
SELECTION_UNCERTAINTY = "uncertainty"
SELECTION_SKIPPED = "skipped.csv"
# What `preannotate` writes: COCO 1.0 pre-annotations and the scans they are for
PREANNOTATIONS = "annotations.json"
PREANNOTATION_IMAGES = "images"
SCAN_REPORT_CSV = "report.csv"
SCAN_REPORT_HTML = "report.html"
FAILED_SCANS = "failed.json"

# What `aggregate` writes into the sweep folder (or out=)
CV_RESULTS_JSON = "cv_results.json"
CV_RESULTS_MD = "cv_results.md"
CV_RESULTS_TEX = "cv_results.tex"
CV_COMPARISON_PNG = "cv_comparison.png"
STUDY_HTML = "report.html"

# What `pretrain` writes (besides .hydra/, checkpoints/last.ckpt and tensorboard/)
PRETRAINED = "pretrained.pt"  # the file to pass on: encoder.weights=<run>/pretrained.pt
PRETRAIN_RECORD = "pretrained.json"  # what it was trained on and how; its presence = finished
RECONSTRUCTIONS = "reconstructions"  # epoch_NNN.png: held-out images, what the model saw, what it filled in

# What `lr_find` and `export` write
LR_FIND_JSON = "lr_find.json"
LR_FIND_PNG = "lr_find.png"
ONNX_MODEL = "model.onnx"  # export's default output=
MODEL_CARD = "model_card.md"  # beside the .onnx file
MODEL_FOLDER = "model"  # export format=safetensors' default output=: the shareable model folder (runs/model_folder;
# its files' names: models/stored.py, MODEL_CONFIG, MODEL_WEIGHTS, MODEL_README)

# Keys that must agree between an interrupted run and the command that resumes it.
# (max_epochs too: the OneCycle schedule restored from last.ckpt was laid out for the original length.)
RUN_IDENTITY = (
    "encoder.name",
    "fold",
    "n_folds",
    "seed",
    "split",
    "data.image_size",
    "data.resize",
    "data.max_side",
    "data.train_fraction",
    "labels",
    "trainer.max_epochs",
)
# What must agree between ensemble members: they are evaluated on one validation set with one label map.
SAME_VALIDATION_SET = ("fold", "n_folds", "seed", "split", "data.image_size", "data.resize", "data.max_side", "labels")


def panel_overlays(run_dir: Path) -> list[Path]:
    """A run's first best and first worst overlay panel (PANEL_GLOBS): what the study page shows of it."""
    return [p for pattern in PANEL_GLOBS for p in sorted(Path(run_dir).glob(pattern))[:1]]


def panel_stem(overlay: Path) -> Path:
    """`…/best01_<id>_overlay.png` -> `…/best01_<id>`: add a PANEL_FILES suffix (and .png) or VIEWER_SUFFIX."""
    return overlay.with_name(overlay.name[: -len(f"{PANEL_FILES['overlay']}.png")])


def run_dir_of(ckpt: Path) -> Path:
    """The run folder of a checkpoint written by training (<run>/checkpoints/<name>.ckpt); a model folder
    (export format=safetensors) is its own: its splits.json and model card are inside."""
    return Path(ckpt) if Path(ckpt).is_dir() else Path(ckpt).parent.parent


def recorded_overrides(run_dir: Path) -> list[str]:
    path = run_dir / OVERRIDES
    return [str(o) for o in OmegaConf.load(path)] if path.exists() else []


@functools.lru_cache(maxsize=1)
def default_train_config() -> tuple[dict[str, str], DictConfig]:
    """The training config as composed with no overrides: its group choices (loss=dice_focal …) and values."""
    cfg = compose("train", overrides=["run_dir=."], return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices), cfg


def bookkeeping_keys() -> frozenset[str]:
    """Overrides that say where or how a run ran, not what it trained: the training config's own
    `hydra.job.config.override_dirname.exclude_keys` (one list, for sweep folder names and for aggregate's
    grouping), plus `fold` (what groups are made of) and `run_dir`."""
    _, cfg = default_train_config()
    return frozenset(cfg.hydra.job.config.override_dirname.exclude_keys) | {"fold", "run_dir"}


def is_bookkeeping(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return key in bookkeeping_keys() or key.startswith(("hydra.", "hydra/"))


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
