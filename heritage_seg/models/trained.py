"""The trained network as inference runs it, and the one way a stored model becomes it.

`SegmentationNetwork` is the inference half of a heritage_seg model: the U-Net, the extra heads of
heads=multitask, the encoder's normalisation (on the device, inputs arrive as uint8) and the temperature, built
from a checkpoint's plain hyper-parameters. The LightningModule that trains it (training/module.py) and the plain
`TrainedModel` that every command and the Python API load (`load_model`) are both built by it, so their weights
have the same names and a checkpoint of one is a checkpoint of the other."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.heads import AuxiliaryHeads, decode, head_weights, task_classes
from heritage_seg.models.stored import read_checkpoint
from heritage_seg.models.unet import build_unet, encoder_name, pixel_statistics

# state_dict entries of the training module that are no part of the network (the losses' fitted class weights,
# saved by checkpoints made before they became non-persistent buffers)
TRAINING_ONLY = ("loss.", "aux_losses.")


class SegmentationNetwork:
    """Mixed into an nn.Module (before it in the bases); `_build_network` is called from its __init__. The host
    keeps its hyper-parameters in `hparams` (Lightning's, or TrainedModel's plain dict)."""

    hparams: Mapping[str, Any]

    def _build_network(
        self,
        config: DictConfig,
        labels: LabelMap,
        protocol: Mapping[str, Any] | None,
        temperature: float,
        pretrained: bool = False,
        model: nn.Module | None = None,
        channels_last: bool = False,
    ) -> None:
        encoder = config.encoder
        # checkpoints made before the protocol was recorded were squash-trained at their run's image size
        self.protocol = Protocol.from_record(protocol, config.data.image_size)
        name = encoder_name(encoder)  # the smp name (timm's tu- route for source: timm)
        if model is None:
            weights = encoder.weights if pretrained else None
            model = build_unet(name, weights, labels.num_classes, encoder.get("kwargs"))
        self.channels_last = channels_last
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        # heads=multitask: damage/clean and coarse heads beside the fine one (models/heads.py)
        self.aux_weights = head_weights(config.get("heads"))
        self.aux_heads = (
            AuxiliaryHeads({task: len(task_classes(labels, task)) for task in self.aux_weights})
            if self.aux_weights
            else None
        )
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}: must be > 0")
        self.temperature = float(temperature)
        # Inputs arrive as uint8; normalise on the device with the encoder's own statistics.
        mean, std = pixel_statistics(name)
        self.register_buffer("pixel_mean", mean)
        self.register_buffer("pixel_std", std)

    @property
    def run_config(self) -> DictConfig:
        """The resolved config the model was trained with (a copy)."""
        return OmegaConf.create(dict(self.hparams["run_config"]))

    @property
    def labels(self) -> LabelMap:
        return LabelMap.from_config(self.hparams["run_config"]["labels"])

    def _normalised(self, image: torch.Tensor) -> torch.Tensor:
        x = (image.float() - self.pixel_mean) / self.pixel_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0..255) NCHW images -> logits (N, C, H, W) of the fine classes (with heads=multitask too:
        the extra heads are read by `task_logits`)."""
        return self._tempered(self.model(self._normalised(image)))

    def _tempered(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.temperature == 1.0 else logits / self.temperature

    def task_logits(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head's logits in one pass: `fine` (as `forward`) and, with heads=multitask, `binary` (clean,
        damage) and `coarse` (the label map's coarse classes)."""
        if self.aux_heads is None:
            return {"fine": self(image)}
        fine, decoded = decode(self.model, self._normalised(image))
        return {"fine": self._tempered(fine), **self.aux_heads(decoded)}

    @torch.no_grad()
    def pooled_features(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0..255) NCHW images -> (N, D) the encoder's deepest features averaged over the image:
        what `select` compares scans by (two scans the model sees alike are close)."""
        return self.model.encoder(self._normalised(image))[-1].float().mean(dim=(2, 3))


class TrainedModel(SegmentationNetwork, nn.Module):
    """A trained model for inference: the network of a checkpoint or model folder, without its training parts
    (loss, optimiser, metrics). Built from the checkpoint's plain hyper-parameters."""

    def __init__(
        self,
        run_config: Mapping[str, Any],
        protocol: Mapping[str, Any] | None = None,
        class_weights: Mapping[str, Any] | None = None,
        temperature: float = 1.0,
    ):
        nn.Module.__init__(self)
        self.hparams = {
            "run_config": dict(run_config),
            "protocol": protocol,
            "class_weights": class_weights,
            "temperature": temperature,
        }
        config = OmegaConf.create(dict(run_config))
        self._build_network(
            config, LabelMap.from_config(config.labels, "the run config's labels"), protocol, temperature
        )


def model_from_checkpoint(checkpoint: Mapping[str, Any], where: str) -> TrainedModel:
    """The model a checkpoint dict (read_checkpoint's) describes, its weights loaded, in eval mode on the CPU;
    `where` begins every message (the option and the file)."""
    hyper_parameters = checkpoint["hyper_parameters"]
    LabelMap.from_config(hyper_parameters["run_config"]["labels"], f"{where}: its label map")
    model = TrainedModel(
        hyper_parameters["run_config"],
        hyper_parameters.get("protocol"),
        hyper_parameters.get("class_weights"),
        hyper_parameters.get("temperature", 1.0),
    )
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(TRAINING_ONLY)}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # missing/unexpected keys or a shape mismatch, e.g. another number of classes
        encoder = encoder_name(hyper_parameters["run_config"]["encoder"])
        raise ValueError(
            f"{where}: its weights do not fit the {encoder} U-Net with the label map its config "
            f"names ({str(err).strip().splitlines()[-1].strip()[:300]})"
        ) from err
    return model.eval()


def load_model(path: str | Path, option: str = "ckpt", trust: bool = False) -> TrainedModel:
    """The trained model of a `.ckpt` or a model folder, read once without running anything it might carry
    (models/stored.py; tensors memory-mapped); `option` names the setting that passed it in every message, for
    what users get wrong: a missing file, one that is no checkpoint or of another heritage_seg version, weights
    that do not fit the network its config names. `trust`: see read_checkpoint (export trust=true only)."""
    path = Path(path).expanduser()
    return model_from_checkpoint(read_checkpoint(path, option, trust), f"{option}={path}")
