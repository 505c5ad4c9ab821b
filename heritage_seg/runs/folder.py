"""The run folder: what every command writes, and under which names (what identifies a run: runs/identity.py;
claiming a folder: runs/claim.py).

The run folder is the contract between training and everything after it (evaluate, aggregate, resume): later
tools read what a run wrote and never re-derive it. The names of every output of every command live here and
nowhere else, except that conf/callbacks/default.yaml spells checkpoints/{best,last}.ckpt for Lightning's
ModelCheckpoint (tests/test_config.py checks the two agree). What the JSON files hold: heritage_seg.runs.records.
"""

from __future__ import annotations

from pathlib import Path

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
