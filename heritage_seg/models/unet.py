"""smp U-Net per encoder config, the pretrained-weights policy, and the encoder's input normalisation.

`encoder.weights` is one of:
  imagenet  - the encoder's ImageNet weights from the Hugging Face hub (or its local cache);
  null      - random initialisation;
  <path>    - a local weights file: `pretrain`'s pretrained.pt (encoder and decoder, checked against the encoder),
              or a timm state dict for `tu-` encoders, a MiT state dict for mit_*.
When weights are asked for and cannot be had, building fails at once; it never falls back to random init.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from heritage_seg.core.errors import WeightsUnavailable
from heritage_seg.core.hub import offline_unless_reachable
from heritage_seg.models.pretrained import load_pretrained, read_pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODER_CHANNELS = (256, 128, 64, 32, 16)


def _weights_help(encoder: str, reason: str) -> str:
    return (
        f"encoder.weights for '{encoder}': {reason}\n"
        "Choose one of:\n"
        "  encoder.weights=imagenet        download ImageNet weights (needs the Hugging Face hub or its local cache)\n"
        "  encoder.weights=/path/to/file   a local weights file (.safetensors/.pth) for this encoder\n"
        "  encoder.weights=null            random initialisation (no pretraining)"
    )


def _timm_name(encoder: str) -> str:
    return encoder[len("tu-") :]


@dataclass(frozen=True)
class Encoder:
    """What a conf/encoder/*.yaml builds: the U-Net's encoder by its smp name, its family (for the study tables),
    the weights it starts from and extra keyword arguments for it. `source: timm` with a bare timm name
    (`encoder=timm encoder.name=resnet50`) means timm's model through smp's timm-universal route, `tu-resnet50`
    (smp's own resnet50 would be another model). Building it checks the name, before any data is loaded."""

    name: str
    family: str = "unknown"
    weights: str | None = "imagenet"
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        name = str(self.name)
        if self.source == "timm" and not name.startswith("tu-"):
            name = "tu-" + name
        object.__setattr__(self, "name", name)
        check_encoder_name(name)


def encoder_name(encoder: Mapping[str, Any]) -> str:
    """The smp name of a config's `encoder` section, checked: its `name`, through timm's `tu-` route for
    `source: timm` (`encoder=timm encoder.name=resnet50` -> tu-resnet50). The run config keeps the name as the user
    wrote it; everything that builds or names the network asks this (a checkpoint of an earlier version that
    recorded tu-resnet50 gives the same)."""
    return Encoder(name=str(encoder["name"]), source=encoder.get("source")).name


def check_encoder_name(encoder: str) -> None:
    """Unknown names fail here, before any data is loaded."""
    import timm

    if encoder.startswith("tu-"):
        if not timm.is_model(_timm_name(encoder).split(".")[0]):
            raise ValueError(f"encoder.name={encoder}: timm has no model '{_timm_name(encoder)}'")
    elif encoder not in smp.encoders.get_encoder_names():
        raise ValueError(
            f"encoder.name={encoder}: not an smp encoder; use one of the configs (encoder=convnext|mit_b3|maxvit) "
            "or a timm model as 'tu-<name>'"
        )


def normalisation(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std the encoder's pretrained weights expect (timm's pretrained config; ImageNet for smp's MiT)."""
    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(_timm_name(encoder))
        if cfg is not None and getattr(cfg, "mean", None) is not None:
            return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


def pixel_statistics(encoder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's mean and std (`normalisation`) as (1, C, 1, 1) tensors on the 0..255 scale: inputs arrive as
    uint8 and are normalised on the device, in training, pre-training and inference alike."""
    mean, std = normalisation(encoder)
    return tuple(torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) * 255.0 for v in (mean, std))


def build_unet(
    encoder: str,
    weights: str | None,
    num_classes: int,
    encoder_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """smp U-Net, decoder (256, 128, 64, 32, 16), no activation (the loss and metrics take logits)."""
    check_encoder_name(encoder)
    kwargs = dict(encoder_kwargs or {})
    weights = None if weights in (None, "null", "none", "None") else str(weights)
    common = dict(encoder_name=encoder, classes=num_classes, activation=None, decoder_channels=DECODER_CHANNELS)

    if weights is None:
        return _feature_pyramid_guard(encoder, lambda: smp.Unet(encoder_weights=None, **common, **kwargs))

    if weights != "imagenet":  # a local file
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(_weights_help(encoder, f"file {path} does not exist"))
        if path.suffix == ".json":  # pretrain's pretrained.json sits beside the weights it describes (issue 36)
            beside = sorted(p.name for p in path.parent.glob(f"{path.stem}.*") if p.suffix in (".pt", ".safetensors"))
            weights_file = path.with_name(beside[0]) if beside else path.with_suffix(".pt")
            raise ValueError(
                f"encoder.weights={path}: this is the description of {weights_file.name}, not weights: pass that "
                f"file (encoder.weights={weights_file})"
            )
        if (pretrained := read_pretrained(path)) is not None:  # `pretrain`'s pretrained.pt: encoder and decoder
            model = smp.Unet(encoder_weights=None, **common, **kwargs)
            load_pretrained(model, pretrained, encoder, path)
            return model
        if encoder.startswith("tu-"):
            overlay = dict(file=str(path))
            return _guarded(
                encoder,
                lambda: smp.Unet(encoder_weights=True, pretrained_cfg_overlay=overlay, **common, **kwargs),
                f"could not load {path}",
            )
        model = smp.Unet(encoder_weights=None, **common, **kwargs)
        _guarded(encoder, lambda: model.encoder.load_state_dict(_read_state_dict(path)), f"could not load {path}")
        return model

    reachable = offline_unless_reachable()
    where = "the Hugging Face hub" if reachable else "the local Hugging Face cache (the hub is not reachable)"
    return _guarded(
        encoder,
        lambda: smp.Unet(encoder_weights=True if encoder.startswith("tu-") else "imagenet", **common, **kwargs),
        f"ImageNet weights could not be had from {where}",
    )


def _feature_pyramid_guard(encoder: str, build):
    try:
        return build()
    except (RuntimeError, AssertionError, TypeError, ValueError, AttributeError, KeyError) as err:
        raise ValueError(
            f"encoder.name={encoder}: cannot be used as a U-Net encoder (it must give a 5-level feature pyramid "
            f"through timm's features_only / smp): {type(err).__name__}: {err}"
        ) from err


def _guarded(encoder: str, build, reason: str):
    try:
        return build()
    except WeightsUnavailable:
        raise
    except Exception as err:  # hub, file and state-dict errors come in many types
        raise WeightsUnavailable(_weights_help(encoder, f"{reason} ({type(err).__name__}: {err})")) from err


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state
