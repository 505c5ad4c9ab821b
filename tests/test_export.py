"""ONNX export: the graph computes what PyTorch computes (onnxruntime), at other sizes where the encoder allows
it, the model card describes the model, and nothing is overwritten or half-written."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from heritage_seg.core.errors import MissingExtra
from heritage_seg.deploy.onnx import check_against_pytorch, export_onnx
from heritage_seg.tasks.export import export
from tests.conftest import compose_config

ort = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install -e '.[onnx]'; CI installs it)")


def _cfg(ckpt, *overrides):
    return compose_config([f"ckpt={ckpt}", *overrides], config_name="export")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    return out, export(_cfg(trained_run / "checkpoints" / "best.ckpt"), out)


def test_onnx_graph_matches_pytorch_on_validation_images_and_other_sizes(exported, trained_run, capsys):
    out, result = exported
    assert out.is_file() and result["argmax_agreement"] >= 0.999 and result["max_abs_logit_difference"] < 1e-3
    assert (1, 3, 64, 128) in result["shapes"]  # a dynamic width was checked too
    from heritage_seg.models.trained import load_model

    module = load_model(trained_run / "checkpoints" / "best.ckpt")
    batch = np.random.default_rng(0).integers(0, 255, (2, 3, 96, 160), dtype=np.uint8)
    again = check_against_pytorch(out, module, [batch])
    assert again["argmax_agreement"] >= 0.999 and again["max_abs_logit_difference"] < 1e-3


def test_model_card_names_the_encoder_labels_metrics_and_the_check(exported, labels):
    out, result = exported
    card = (out.parent / "model_card.md").read_text()
    assert "tu-convnext_tiny (CNN)" in card and "model.onnx" in card
    for name, color in zip(labels.names, labels.colors):
        assert re.search(rf"\| {re.escape(name)} \| #{color[0]:02X}{color[1]:02X}{color[2]:02X} \|", card), name
    assert "| without TTA |" in card and "## Intended use and limits" in card
    assert f"{100 * result['argmax_agreement']:.3f} %" in card


def test_existing_output_is_kept_and_bad_options_are_refused(exported, trained_run, tmp_path):
    out, _ = exported
    before = out.stat().st_mtime_ns
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export(_cfg(ckpt), out)
    assert out.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="format=tflite"):
        export(_cfg(ckpt, "format=tflite"), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="<name>.onnx"):
        export(_cfg(ckpt), tmp_path / "model.bin")
    assert not any(tmp_path.iterdir())


def test_a_missing_extra_is_named(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"onnxruntime is not installed\): pip install -e '\.\[onnx\]'"):
        export(_cfg(trained_run / "checkpoints" / "best.ckpt"), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
def test_maxvit_is_exported_at_its_fixed_size(tmp_path):
    """MaxViT's window attention is laid out for one input size: batch stays dynamic, height and width not."""
    import onnx

    from heritage_seg.models.unet import build_unet
    from heritage_seg.training.module import SegmentationModule

    torch.manual_seed(0)
    model = build_unet("tu-maxvit_tiny_tf_384", None, 16, {"img_size": 64})
    run_config = OmegaConf.to_container(compose_config(["run_dir=/tmp/x", "encoder=maxvit"]), resolve=True)
    module = SegmentationModule(run_config, model=model).eval()
    graph = export_onnx(module, "tu-maxvit_tiny_tf_384", 64, tmp_path / "maxvit.onnx")
    assert graph["dynamic_spatial"] is False
    dims = onnx.load(str(tmp_path / "maxvit.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 64, 64]
    batch = np.random.default_rng(1).integers(0, 255, (2, 3, 64, 64), dtype=np.uint8)
    assert check_against_pytorch(tmp_path / "maxvit.onnx", module, [batch])["argmax_agreement"] >= 0.999
