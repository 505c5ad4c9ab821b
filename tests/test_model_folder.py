"""The shareable model folder (issue 37): `export format=safetensors` writes config.json + model.safetensors +
README.md (+ splits.json); every command that takes ckpt= or init_from= takes it and maps exactly as the .ckpt it
came from; a folder whose description or weights were altered or damaged is refused naming the key or the file;
a trusted pickled checkpoint of an earlier version is converted only when the user says trust=true."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.models.stored import MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS
from heritage_seg.models.trained import load_model
from heritage_seg.runs.folder import SPLITS
from heritage_seg.tasks.export import export
from tests.conftest import compose_config, tiny_train_overrides
from tests.helpers import scan_folder


def _export(ckpt, output, *overrides):
    return export(compose_config([f"ckpt={ckpt}", "format=safetensors", *overrides], "export"), output)


@pytest.fixture(scope="module")
def shared(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "museum_model"
    _export(trained_run / "checkpoints" / "best.ckpt", folder)
    return folder


@pytest.fixture
def scans(sample_root, tmp_path):
    return scan_folder(sample_root, tmp_path / "scans", 2)


def _pixels(path):
    return np.asarray(Image.open(path))


def test_the_folder_holds_the_model_its_description_and_its_card(shared, trained_run):
    assert sorted(p.name for p in shared.iterdir()) == sorted([MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS, SPLITS])
    config = json.loads((shared / MODEL_CONFIG).read_text())
    run_config = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)["hyper_parameters"]
    assert config["encoder"]["name"] == run_config["run_config"]["encoder"]["name"]
    assert config["labels"] == run_config["run_config"]["labels"]  # names, raw values, colours and groups
    assert config["protocol"] == run_config["protocol"] and config["temperature"] == 1.0
    assert config["heritage_seg"]["format"] == 1 and config["started_from"] == "random"
    assert config["data"]["train_images"] > 0 and config["data"]["val_images"] > 0
    assert len(config["normalisation"]["pixel_mean"]) == 3
    # the exporting machine's own settings are not part of the model
    assert "run_dir" not in config["training"] and "cache_dir" not in config["training"]["data"]
    card = (shared / MODEL_README).read_text()
    assert f"This folder, `{shared.name}`, is the model to share" in card
    assert f"ckpt={shared.name}" in card and f"init_from={shared.name}" in card
    assert "Burn marks" in card and "## Validation metrics" in card
    assert oct((shared / MODEL_WEIGHTS).stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_the_commands_the_card_and_export_print_paste_back_for_a_folder_name_with_a_space(
    trained_run, tmp_path, capsys
):
    from heritage_seg.core.cli import override

    folder = tmp_path / "museum model"
    _export(trained_run / "checkpoints" / "best.ckpt", folder)
    card = (folder / MODEL_README).read_text()
    pasted = override("ckpt", "museum model")
    assert pasted != "ckpt=museum model" and f"python -m heritage_seg.predict {pasted} input=" in card
    assert override("init_from", "museum model") in card
    assert override("ckpt", str(folder)) in capsys.readouterr().out


def _umask():
    from heritage_seg.core.files import UMASK

    return UMASK


def test_predict_and_evaluate_with_the_folder_give_what_the_checkpoint_gives(shared, trained_run, scans, tmp_path):
    from heritage_seg.tasks.evaluate import evaluate
    from heritage_seg.tasks.predict import predict

    ckpt = trained_run / "checkpoints" / "best.ckpt"
    for name, model in (("ckpt", ckpt), ("folder", shared)):
        predict(
            compose_config([f"ckpt={model}", f"input={scans}", "tta=true", "viewer=false"], "predict"), tmp_path / name
        )
    maps = sorted((tmp_path / "ckpt").glob("*_*.png"))
    assert len(maps) >= 4  # mask, confidence, uncertainty of each scan
    for path in maps:  # to the last pixel
        assert np.array_equal(_pixels(path), _pixels(tmp_path / "folder" / path.name)), path.name
    for name, model in (("ev_ckpt", ckpt), ("ev_folder", shared)):
        quick = ["num_examples=0", "viewer=false", "save_masks=false", "calibrate=true"]
        evaluate(compose_config([f"ckpt={model}", *quick], "evaluate"), tmp_path / name)
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("ev_ckpt", "ev_folder"))
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["miou"] == b["miou"]
    assert a["calibration"]["temperature"] == b["calibration"]["temperature"]
    # the folder's calibrated copy is a checkpoint like any other
    assert load_model(tmp_path / "ev_folder" / "calibrated.ckpt").temperature == pytest.approx(
        b["calibration"]["temperature"], rel=1e-5
    )


def test_an_ensemble_mixes_folders_and_checkpoints(shared, trained_run, scans, tmp_path):
    from heritage_seg.tasks.predict import predict

    members = f"ckpt=[{trained_run}/checkpoints/best.ckpt,{shared}]"
    predict(compose_config([members, f"input={scans}", "viewer=false"], "predict"), tmp_path / "ensemble")
    assert list((tmp_path / "ensemble").glob("*_mask.png"))


def test_init_from_the_folder_starts_from_its_weights(shared, trained_run, sample_root, tmp_path):
    from heritage_seg.training.build import build_training

    source = load_model(trained_run / "checkpoints" / "best.ckpt")
    cfg = compose_config(tiny_train_overrides(tmp_path / "run", sample_root) + [f"init_from={shared}"])
    _, module, _ = build_training(cfg, LabelMap.from_config(cfg.labels))
    mine, theirs = module.model.state_dict(), source.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def _altered(shared, tmp_path, change):
    folder = tmp_path / "altered"
    shutil.copytree(shared, folder)
    config = json.loads((folder / MODEL_CONFIG).read_text())
    change(config)
    (folder / MODEL_CONFIG).write_text(json.dumps(config))
    return folder


def _another_class(config):
    config["labels"]["classes"].append({"name": "Mould", "raw": 16, "color": "#00FF00"})


def _unknown_encoder(config):
    config["encoder"]["name"] = "tu-no_such_network"


def _other_normalisation(config):
    config["normalisation"]["pixel_mean"][0] += 10


def _no_labels(config):
    del config["labels"]


@pytest.mark.parametrize(
    "change, key",
    [
        (_another_class, "`labels` names 17 classes, but the weights"),
        (_unknown_encoder, "`encoder.name` is unknown"),
        (_other_normalisation, "`normalisation.pixel_mean` does not match"),
        (_no_labels, "`labels` is missing"),
    ],
)
def test_an_altered_description_is_refused_naming_the_key(shared, tmp_path, change, key):
    folder = _altered(shared, tmp_path, change)
    with pytest.raises(ValueError, match=rf"ckpt=.*altered/{MODEL_CONFIG}: {key}"):
        load_model(folder)


def test_a_missing_description_or_damaged_weights_are_refused_naming_the_file(shared, scans, tmp_path):
    from heritage_seg.tasks.predict import predict

    folder = tmp_path / "damaged"
    shutil.copytree(shared, folder)
    weights = folder / MODEL_WEIGHTS
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    with pytest.raises(ValueError, match=rf"ckpt=.*damaged/{MODEL_WEIGHTS}: not a complete safetensors file"):
        predict(compose_config([f"ckpt={folder}", f"input={scans}"], "predict"), tmp_path / "out")
    (folder / MODEL_CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match=r"init_from=.*damaged: not a heritage_seg model folder: no config"):
        load_model(folder, "init_from")
    assert not (tmp_path / "out").exists()


def test_export_never_replaces_a_folder_unasked_and_replaces_it_whole_when_asked(shared, trained_run, tmp_path):
    target = tmp_path / "museum_model"
    shutil.copytree(shared, target)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        _export(trained_run / "checkpoints" / "best.ckpt", target)
    assert (target / "notes.txt").read_text() == "mine"
    _export(trained_run / "checkpoints" / "best.ckpt", target, "overwrite=true")
    assert not (target / "notes.txt").exists() and (target / MODEL_WEIGHTS).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_trusted_old_pickled_checkpoint_is_converted_only_with_trust_true(trained_run, tmp_path):
    """Earlier versions pickled OmegaConf nodes into the hyper-parameters: refused as any pickled file, with the
    way to convert it; export trust=true turns it into a folder that maps as the original did."""
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["run_config"] = OmegaConf.create(checkpoint["hyper_parameters"]["run_config"])
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.raises(ValueError, match=rf"refused: .*export ckpt={old} format=safetensors trust=true"):
        load_model(old)
    with pytest.raises(ValueError, match="refused"):
        _export(old, tmp_path / "converted")
    with pytest.raises(ValueError, match="trust=true: only with format=safetensors"):
        export(compose_config([f"ckpt={old}", "trust=true"], "export"), tmp_path / "model.onnx")
    result = _export(old, tmp_path / "converted", "trust=true")
    assert result["trusted"]
    converted, original = (
        load_model(tmp_path / "converted"),
        load_model(trained_run / "checkpoints" / "best.ckpt"),
    )
    image = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(converted(image), original(image))
