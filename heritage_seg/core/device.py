"""Where and how precisely a model runs: device choice, training and inference precision, autocast, and the CPU
threads SLURM allotted. Shared by training, evaluation, mapping and the benchmarks."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch

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


def with_autocast(
    logits_fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device, precision: str
) -> Callable[[torch.Tensor], torch.Tensor]:
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
