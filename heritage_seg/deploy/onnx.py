"""A trained model as an ONNX file, checked against PyTorch with onnxruntime, and its model card.

The exported graph is the whole trained network as `predict` runs it on one window: RGB float32 pixels 0..255
(N, 3, H, W) in, the encoder's normalisation inside, 16-class logits (N, C, H, W) out. Sliding windows, TTA and
the scan report stay with the caller. Batch and spatial size are dynamic where the encoder allows it (multiples
of 32); MaxViT's window attention is laid out for one input size, so its spatial size is fixed at the training
size. smp has no exporter of its own (segmentation_models_pytorch issue #1015): this is torch.onnx's TorchScript
exporter (it needs no onnxscript) with the check that issue asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from heritage_seg.core.errors import require_extra

OPSET = 17


def require_onnx() -> tuple[Any, Any]:
    """onnx and onnxruntime, or a message naming the extra that installs them."""
    return require_extra("onnx", "onnx", "format=onnx"), require_extra("onnxruntime", "onnx", "format=onnx")


def fixed_spatial_size(encoder_name: str) -> bool:
    return "maxvit" in encoder_name


def export_onnx(module: nn.Module, encoder_name: str, image_size: int, path: Path, opset: int = OPSET) -> dict:
    """Write the ONNX graph to `path`; returns what the model card says about its input and output."""
    onnx, _ = require_onnx()
    fixed = fixed_spatial_size(encoder_name)
    axes = {0: "batch"} if fixed else {0: "batch", 2: "height", 3: "width"}
    example = torch.zeros(1, 3, image_size, image_size)
    # the module's own forward (float32 0..255 NCHW -> logits, normalisation inside), in eval mode: the exporter
    # puts the module back in the mode it found it in, and a wrapper left in training mode would switch the whole
    # trained module to training mode (BatchNorm on batch statistics)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    onnx.checker.check_model(str(path))
    return {
        "opset": opset,
        "input": "image: float32 (N, 3, H, W), RGB pixel values 0..255",
        "output": "logits: float32 (N, C, H, W); argmax over C = class id, softmax = probabilities",
        "dynamic_batch": True,
        "dynamic_spatial": not fixed,
        "spatial_size": f"{image_size} x {image_size} only" if fixed else "any multiple of 32",
    }


def check_against_pytorch(path: Path, module: nn.Module, batches: Sequence[np.ndarray]) -> dict[str, Any]:
    """Run PyTorch and onnxruntime on the same (N, 3, H, W) uint8 batches: the largest absolute logit
    difference and the share of pixels whose argmax class agrees."""
    _, ort = require_onnx()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module.eval()
    worst, agree, pixels, images = 0.0, 0, 0, 0
    for batch in batches:
        x = batch.astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).float().numpy()
        got = session.run(["logits"], {"image": x})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
        pixels += expected.shape[0] * expected.shape[2] * expected.shape[3]
        images += expected.shape[0]
    return {
        "max_abs_logit_difference": worst,
        "argmax_agreement": agree / max(pixels, 1),
        "images": images,
        "pixels": pixels,
        "shapes": sorted({tuple(int(v) for v in b.shape) for b in batches}),
        "onnxruntime": ort.__version__,
    }


def check_batches(images: Sequence[np.ndarray], size: int, dynamic: bool, per_batch: int = 4) -> list[np.ndarray]:
    """(N, 3, size, size) uint8 batches from (H, W, 3) images: the centre crop of each (reflect-padded where
    smaller); for a dynamic graph also one batch at another width (two crops side by side)."""
    from heritage_seg.core.geometry import centred_pads, reflect_pad

    crops = []
    for image in images:
        image = reflect_pad(image, *centred_pads(*image.shape[:2], size))
        h, w = image.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(np.ascontiguousarray(image[top : top + size, left : left + size].transpose(2, 0, 1)))
    batches = [np.stack(crops[i : i + per_batch]) for i in range(0, len(crops), per_batch)]
    if dynamic and len(crops) >= 2:
        batches.append(np.concatenate([crops[0], crops[1]], axis=2)[None])  # (1, 3, size, 2 * size)
    return batches
