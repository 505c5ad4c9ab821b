"""The file `pretrain` writes and `encoder.weights=<file>` reads: a U-Net's encoder and decoder, self-supervised.

One torch file (`pretrained.pt`, tensors and plain values only, so it loads with `weights_only=True`):
    format: "heritage_seg.pretrained", version: 1,
    encoder: the smp encoder name it was made for (`tu-convnext_tiny`, `mit_b3`, …),
    encoder_kwargs: what the encoder was built with (MaxViT: its image size),
    encoder_state / decoder_state: state dicts of the U-Net's encoder and decoder.
The pretext head (3 output channels, the pixels) is left out: a segmentation head is trained afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from heritage_seg.core.files import write_file_atomic

FORMAT = "heritage_seg.pretrained"
VERSION = 1


def pretrained_payload(model: nn.Module, encoder: str, encoder_kwargs: Mapping[str, Any] | None = None) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "encoder": encoder,
        "encoder_kwargs": dict(encoder_kwargs or {}),
        "encoder_state": {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()},
        "decoder_state": {k: v.detach().cpu().clone() for k, v in model.decoder.state_dict().items()},
    }


def save_pretrained(path: Path, model: nn.Module, encoder: str, encoder_kwargs: Mapping[str, Any] | None = None):
    """Written to a temporary file and renamed: a reader never sees half a file."""
    payload = pretrained_payload(model, encoder, encoder_kwargs)
    write_file_atomic(Path(path), lambda tmp: torch.save(payload, tmp))


def read_pretrained(path: Path) -> dict | None:
    """The payload if `path` is a file `pretrain` wrote, else None (another kind of weights file)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # safetensors, a timm .pth with objects in it, not a torch file at all: not ours
        return None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return payload
    return None


def load_pretrained(model: nn.Module, payload: dict, encoder: str, path: Path) -> None:
    """Put a pre-trained encoder and decoder into a freshly built U-Net for `encoder`; a file made for another
    encoder or a newer format is refused, naming the file and what it was made for."""
    if payload.get("version", 0) > VERSION:
        raise ValueError(
            f"encoder.weights={path}: written by a newer heritage_seg (format version {payload['version']}, this "
            f"one reads {VERSION}); update heritage_seg"
        )
    if payload["encoder"] != encoder:
        raise ValueError(
            f"encoder.weights={path}: pre-trained for encoder {payload['encoder']}, but this run builds {encoder}; "
            f"pass the encoder it was made for (encoder.name={payload['encoder']}) or pre-train this one"
        )
    try:
        model.encoder.load_state_dict(payload["encoder_state"])
        model.decoder.load_state_dict(payload["decoder_state"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"encoder.weights={path}: does not fit this {encoder} U-Net ({first}); it was pre-trained with "
            f"encoder kwargs {payload.get('encoder_kwargs') or {}} - build the same (e.g. the same data.image_size "
            "for MaxViT)"
        ) from err


def started_from(run_cfg: Mapping[str, Any]) -> str:
    """What a run's weights started from, as metrics.json and the model card say it: `init_from <checkpoint>`,
    `pretrained <file>` (encoder.weights), `imagenet`, or `random`."""
    init = run_cfg.get("init_from")
    if init:
        return f"init_from {init}"
    weights = (run_cfg.get("encoder") or {}).get("weights")
    if weights in (None, "null", "none", "None"):
        return "random"
    return "imagenet" if weights == "imagenet" else f"pretrained {weights}"
