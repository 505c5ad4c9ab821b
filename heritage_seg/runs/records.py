"""The run records: what the JSON files of a run folder and of predict's output folder hold, written and read
through these types and nowhere else.

Each record is a dataclass whose fields are its keys. Writing goes through `write` (atomic, NaN refused: an
undefined metric is null); reading goes through `read`, which fills what files written by earlier versions lack
(the defaults below, and `MetricsRecord.miou_gt` recomputed from its confusion matrix) and keeps keys this version
does not know in `extra`, so nothing written is lost. Readers then index the record's fields, with no scattered
`.get(key, fallback)`. File names: heritage_seg.runs.folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from heritage_seg.core.files import write_json_atomic
from heritage_seg.evaluation.metrics import segmentation_metrics
from heritage_seg.evaluation.scoring import binary_block
from heritage_seg.runs.folder import CLASS_WEIGHTS, FINISHED, METRICS, PRETRAIN_RECORD, SPLITS

R = TypeVar("R", bound="Record")


@dataclass
class Record:
    FILE: ClassVar[str] = ""
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)  # keys this version does not know

    @classmethod
    def from_dict(cls: type[R], payload: Mapping[str, Any], strict: bool = False) -> R:
        """`strict` (what writers use): a key that is no field is an error, so a misspelt key cannot be written."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = {k: v for k, v in payload.items() if k not in names}
        if strict and unknown:
            raise KeyError(
                f"{cls.__name__}: unknown key(s) {sorted(unknown)} (add them to heritage_seg/runs/records.py)"
            )
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in payload
            and f.name != "extra"
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"{cls.__name__}: {', '.join(missing)} missing")
        return cls(**{k: v for k, v in payload.items() if k in names}, extra=dict(unknown))

    def to_dict(self) -> dict[str, Any]:
        payload = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**payload, **self.extra}

    def write(self, path: Path) -> None:
        """Atomically, to `path` (a file) or to the record's own name in `path` (a folder)."""
        path = Path(path)
        write_json_atomic(path / self.FILE if path.is_dir() else path, self.to_dict())

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        path = Path(path)
        path = path / cls.FILE if path.is_dir() else path
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable {cls.FILE or cls.__name__} ({err})") from err
        return cls.from_dict(cls.upgrade(payload))

    @classmethod
    def upgrade(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """What a file written by an earlier version lacks, filled in (defaults do the rest)."""
        return payload


@dataclass
class SplitsRecord(Record):
    """splits.json: the fold a run trained and validated on, which evaluate and aggregate read instead of
    re-deriving folds (and which pairs runs validated on the same images)."""

    FILE: ClassVar[str] = SPLITS
    val_ids: list[str]  # what every reader needs: the images a run was validated on
    fold: int | None = None
    n_folds: int | None = None
    seed: int | None = None
    train_ids: list[str] = field(default_factory=list)
    split: str = "source"
    held_out: str | None = None
    groups: list[str] = field(default_factory=list)
    train_fraction: float = 1.0  # data.train_fraction: the share of the fold's training sources used
    train_sources: list[str] = field(default_factory=list)
    val_sources: list[str] = field(default_factory=list)
    stratum_of_source: dict[str, Any] = field(default_factory=dict)
    root: str | None = None
    image_size: int | None = None
    resize: str = "squash"
    max_side: int | None = None
    encoder: str | None = None

    @property
    def val_set(self) -> str:
        """A fingerprint of the validation images: runs (and shared model folders) validated on the same images
        have the same one, whatever order they list them in."""
        return hashlib.sha256(json.dumps(sorted(self.val_ids)).encode()).hexdigest()[:16]


@dataclass
class FinishedRecord(Record):
    """finished.json: fit ended normally (not interrupted); resume=auto|true leave such a run as it is."""

    FILE: ClassVar[str] = FINISHED
    reason: str
    epochs: int | None = None
    global_step: int | None = None
    monitor: str | None = None
    best_score: float | None = None
    best_checkpoint: str | None = None


@dataclass
class PretrainRecord(Record):
    """pretrained.json: what `pretrain` made pretrained.pt from, so a reader of a later model card can tell."""

    FILE: ClassVar[str] = PRETRAIN_RECORD
    method: str  # "masked image modelling (SimMIM-style, U-Net)"
    encoder: str
    started_from: str | None  # encoder.weights it started from: imagenet, a file, or None (random)
    data_root: str
    image_size: int
    num_images: int  # trained on
    num_val_images: int  # held out for the validation loss and the pictures
    left_out: dict[str, int]  # augmented copies, ids of a fine-tuning's validation fold
    skipped: list[dict[str, str]]  # unreadable files: {file, error}
    mask_patch: int
    mask_ratio: float
    epochs: int
    steps: int
    final_train_loss: float | None
    final_val_loss: float | None
    seconds: float


@dataclass
class ClassWeightsRecord(Record):
    """class_weights.json: the training fold's pixel counts and the loss weights and Dice classes made of them."""

    FILE: ClassVar[str] = CLASS_WEIGHTS
    weights: list[float]
    classes: list[str] = field(default_factory=list)
    strategy: str | None = None
    absent_class_weight: str = "max"
    dice_classes: list[int] | None = None
    train_pixel_counts: list[int] = field(default_factory=list)
    heads: dict[str, dict[str, Any]] | None = None  # heads=multitask: the same, per extra head, on its task's classes


@dataclass
class MetricsRecord(Record):
    """metrics.json / metrics_tta.json: one evaluation of one checkpoint (or ensemble) on a validation fold,
    dataset-level, at `resolution` (native: each mask's own size; train: the model's input size); undefined
    values (a class absent from truth and prediction) are null, never 0."""

    FILE: ClassVar[str] = METRICS
    miou: float | None
    per_class: dict[str, dict[str, Any]]
    fold: int
    miou_gt: float | None = None
    binary: dict[str, Any] | None = None  # any damage vs the clean class (evaluation/metrics.binary_metrics)
    coarse: dict[str, Any] | None = None  # per group of the label map's `groups:`, and their means
    pixel_accuracy: float | None = None
    mean_dice: float | None = None
    classes: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] | None = None
    resolution: str = "train"  # files from before native scoring were counted at the input size
    max_side: int | None = None
    train_resolution: dict[str, Any] | None = None
    encoder: str | None = None
    family: str | None = None
    n_folds: int | None = None
    split: str = "source"
    seed: int | None = None
    image_size: int | None = None
    resize: str = "squash"
    resize_max_side: int | None = None
    held_out: str | None = None
    checkpoint: str | None = None
    started_from: str | None = None  # init_from <ckpt> | pretrained <file> | imagenet | random
    members: list[str] | None = None
    tta: bool = False
    tta_transforms: list[str] = field(default_factory=lambda: ["identity"])
    num_images: int | None = None
    data_root: str | None = None
    device: str | None = None
    precision: str | None = None
    seconds: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    # is the softmax calibrated (evaluation/calibration.py): expected calibration error, per-bin counts
    ece: float | None = None
    reliability: list[dict[str, Any]] | None = None
    # with TTA or an ensemble: error rate per bin of the views' disagreement, and what was measured
    error_by_uncertainty: list[dict[str, Any]] | None = None
    uncertainty: dict[str, Any] | None = None
    # evaluate calibrate=true: the fitted temperature, ECE before and after, the checkpoints written with it
    calibration: dict[str, Any] | None = None

    @classmethod
    def upgrade(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """metrics.json written before miou_gt or the binary block existed: recomputed from the confusion matrix it
        holds (also in its train_resolution block), the clean class being "Clean" as in LabelMap for checkpoints of
        that time; classes from per_class where they were not listed."""
        payload = dict(payload)
        payload.setdefault("classes", list(payload.get("per_class", {})))
        for block in (payload, payload.get("train_resolution")):
            if not block or block.get("confusion_matrix") is None:
                continue
            if "miou_gt" not in block:
                value = segmentation_metrics(block["confusion_matrix"])["miou_gt"]
                block["miou_gt"] = None if np.isnan(value) else float(value)
            if "binary" not in block and "Clean" in payload["classes"]:
                block["binary"] = binary_block(block["confusion_matrix"], payload["classes"].index("Clean"), "Clean")
        return payload


@dataclass
class ScanReport(Record):
    """<scan>_report.json: what predict found on one scan (and how it mapped it); report.csv is its rows."""

    FILE: ClassVar[str] = "report.json"
    image: str
    outputs: str  # the stem of the scan's files (scan_tif when two inputs share a stem)
    width: int
    height: int
    object_pixels: int
    clean: dict[str, Any]
    clean_class: str
    damage_total: dict[str, Any]
    damage: dict[str, dict[str, Any]]
    source: str | None = None
    scale: float | str | None = None
    protocol: str = "squash"
    window: int | None = None
    stride: int | None = None
    windows: int | None = None
    tta: bool = False
    precision: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    transparent_pixels: int = 0
    background: str | None = None
    checkpoints: list[str] = field(default_factory=list)  # more than one: an ensemble
    temperature: float | None = None  # the logits divided by it (a checkpoint from evaluate calibrate=true)
    uncertainty: dict[str, Any] | None = None  # with an uncertainty map (reporting/damage.uncertainty_report)
    binary_head: dict[str, Any] | None = None  # binary_map=true (reporting/damage.binary_head_report)
    dpi: float | None = None  # the scan's resolution as given (dpi=): the viewer's millimetres
    viewer: str | None = None  # <scan>_viewer.html, the zoomable page (viewer=true)


def read_finished(run_dir: Path) -> FinishedRecord | None:
    """What a finished run recorded, or None. Runs from before finished.json: their metrics.json (written when fit
    ended) marks them finished too."""
    if (run_dir / FINISHED).is_file():
        return FinishedRecord.read(run_dir / FINISHED)
    if (run_dir / METRICS).is_file():
        metrics = MetricsRecord.read(run_dir / METRICS)
        return FinishedRecord(
            reason=f"{METRICS} present", best_score=metrics.miou_gt if metrics.miou_gt is not None else metrics.miou
        )
    return None
