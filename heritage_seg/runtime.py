"""What the entry points and the benchmarks share to run a model: device and precision choice, and the
datamodule / LightningModule built from a composed config. Entry points import this, never each other."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from heritage_seg.augment import BatchFlipRotate
from heritage_seg.data.folds import DEFAULT_SPLIT
from heritage_seg.data.labels import LabelMap
from heritage_seg.losses import build_loss
from heritage_seg.models import build_unet, normalisation
from heritage_seg.module import SegmentationModule
from heritage_seg.rundir import SPLITS, run_dir_of

log = logging.getLogger(__name__)


def respect_cpu_allocation() -> None:
    """Use no more CPU threads than SLURM gave the job (SLURM_CPUS_PER_TASK). On a cluster that does not bind
    jobs to their CPUs, torch sees every core of the node and starts a thread per core in each job, so jobs
    sharing a node oversubscribe it (tools/slurm_local.sh's node without binding: a 2 x 2 sweep of tiny jobs
    took 3 min 7 s instead of 32 s)."""
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if allocated.isdigit() and 0 < int(allocated) < torch.get_num_threads():
        log.info("SLURM_CPUS_PER_TASK=%s: using %s CPU threads (of %d)", allocated, allocated, torch.get_num_threads())
        torch.set_num_threads(int(allocated))


def pick_device(name: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str | int | None) -> str | int | None:
    """`auto`: bf16 autocast on GPUs that support it, fp16 + scaler on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


INFERENCE_PRECISIONS = ("auto", "32", "bf16")


def inference_precision(setting: str | int, device: torch.device) -> str:
    """evaluate/predict `precision`: `auto` = bf16 autocast on CUDA GPUs that support it (as training there
    uses), 32 elsewhere; `32` or `bf16` to choose. The softmax and everything after it stay in fp32."""
    setting = str(setting)
    if setting not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision={setting}: choose one of {', '.join(INFERENCE_PRECISIONS)}")
    if setting == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32"
    return setting


def recorded_precision(precision: str) -> str:
    """How metrics.json and report.json name an inference precision: as Lightning names the training ones."""
    return {"32": "32-true", "bf16": "bf16-mixed"}[precision]


def with_autocast(logits_fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """`logits_fn` run under bf16 autocast on `device` (precision "bf16"), or as it is ("32")."""
    if precision == "32":
        return logits_fn

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return logits_fn(images)

    return run


def describe_device(device: torch.device | str) -> str:
    """What metrics.json and the benchmarks record: `cuda:0 (NVIDIA H200)`, `cpu`."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def use_channels_last(cfg: DictConfig) -> bool:
    setting = cfg.get("perf", {}).get("channels_last", "auto")
    return torch.cuda.is_available() if setting == "auto" else bool(setting)


def build_datamodule(run_cfg: DictConfig, labels: LabelMap, data_cfg: DictConfig | None = None, augment=None):
    """The run's datamodule (its fold, n_folds, seed, split), prepared; `data_cfg` overrides the run's data
    section (evaluate with a moved data root)."""
    # partial: the LabelMap object must not pass through OmegaConf
    datamodule = instantiate(run_cfg.data if data_cfg is None else data_cfg, _partial_=True)(
        labels=labels, fold=run_cfg.fold, n_folds=run_cfg.n_folds, seed=run_cfg.seed, augment=augment,
        split=run_cfg.get("split", DEFAULT_SPLIT))
    datamodule.prepare_data()
    return datamodule


def rebuild_validation_data(run_cfg: DictConfig, labels, ckpt: Path, root=None, batch_size=None, cache_dir=None):
    """The datamodule of the training run (same fold/seed/size), optionally with a moved data root."""
    data_cfg = run_cfg.data.copy()
    for key, value in (("root", root), ("batch_size", batch_size), ("cache_dir", cache_dir)):
        if value is not None:
            data_cfg[key] = value
    if not Path(str(data_cfg.root)).expanduser().exists() and data_cfg.get("sample") is None:
        raise FileNotFoundError(
            f"ckpt={ckpt}: the data it was trained on ({data_cfg.root}) is gone; pass data.root=<folder> "
            "pointing at the same data set"
        )
    datamodule = build_datamodule(run_cfg, labels, data_cfg)
    datamodule.setup("validate")
    check_against_splits(ckpt, datamodule)
    return datamodule


def check_against_splits(ckpt: Path, datamodule) -> None:
    """The rebuilt validation fold must be the one the run recorded in its splits.json."""
    splits = run_dir_of(ckpt) / SPLITS
    if splits.exists():
        expected = json.loads(splits.read_text())["val_ids"]
        actual = [datamodule.data.ids[i] for i in datamodule.split.val_idx]
        if expected != actual:
            raise ValueError(
                f"ckpt={ckpt}: the validation fold rebuilt from {datamodule.root} differs from the run's {splits} "
                "(data changed, or checkpoints of different folds?); it would not be the run's validation set"
            )


def build_training(cfg: DictConfig, labels: LabelMap, resume: bool = False):
    """Datamodule (prepared, fold chosen) and LightningModule for `cfg`: train, lr_find and the benchmarks."""
    # On resume the weights come from last.ckpt, so no pretrained download is needed.
    model = build_unet(cfg.encoder.name, None if resume else cfg.encoder.weights, labels.num_classes,
                       cfg.encoder.kwargs)
    augment = instantiate(cfg.augment) if cfg.get("augment") else None
    on_device = isinstance(augment, BatchFlipRotate)  # batch-level on the device, else per sample in the loader
    datamodule = build_datamodule(cfg, labels, augment=None if on_device else augment)
    datamodule.setup("fit")

    loss, used = build_loss(OmegaConf.to_container(cfg.loss, resolve=True), datamodule.train_class_pixel_counts())
    log.info("class weights (%s, absent classes: %s): %s", used["strategy"], used["absent_class_weight"],
             ", ".join(f"{n}={w:.2f}" for n, w in zip(labels.names, used["weights"])))
    mean, std = normalisation(cfg.encoder.name)
    module = SegmentationModule(
        model=model,
        loss=loss,
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        class_names=labels.names,
        ignore_index=labels.ignore_index,
        mean=mean,
        std=std,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        batch_augment=augment if on_device else None,
        channels_last=use_channels_last(cfg),
        protocol=datamodule.protocol(),
    )
    if cfg.get("perf", {}).get("compile"):
        module.model.compile()  # in place: state_dict keys (and so checkpoints) stay as without compile
    class_weight_record = {"classes": list(labels.names), **used}
    return datamodule, module, class_weight_record
