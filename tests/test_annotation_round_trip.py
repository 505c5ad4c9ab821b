"""Pre-annotations out (COCO 1.0, RLE) and corrected annotations back into an ARTeFACT-format folder: the round
trip reproduces a mask exactly, an edit in the tool arrives as made, and bad files are refused before anything
is written."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from heritage_seg.data.coco import categories, decode, mask_annotations
from heritage_seg.data.readers import open_reader
from heritage_seg.tasks.import_annotations import import_annotations
from heritage_seg.tasks.preannotate import preannotate
from tests.conftest import compose_config
from tests.helpers import scan_folder


def _import(annotations, root, *overrides):
    return import_annotations(
        compose_config([f"annotations={annotations}", f"root={root}", *overrides], config_name="import_annotations")
    )


def test_a_class_map_encodes_and_decodes_exactly(labels):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (37, 53), dtype=np.uint8)  # clean and three damage classes
    mask[:3] = labels.ignore_index
    annotations = mask_annotations(mask, labels, image_id=1, first_id=1)
    assert {a["category_id"] for a in annotations} == {1, 2, 3, labels.ignore_index}  # no clean annotation
    rebuilt = np.zeros_like(mask)
    for a in annotations:
        rebuilt[decode(json.loads(json.dumps(a["segmentation"])), 37, 53, "test")] = a["category_id"]
    np.testing.assert_array_equal(rebuilt, mask)
    assert {c["name"] for c in categories(labels)} == (set(labels.names) - {labels.clean_name}) | {"ignore"}


@pytest.fixture(scope="module")
def exported(trained_run, sample_root, tmp_path_factory):
    sources, names = [f"sample_0{k}.png" for k in (20, 21)], [f"new_{k}.png" for k in (20, 21)]
    scans = scan_folder(sample_root, tmp_path_factory.mktemp("chosen"), sources, (150, 110), names)
    out = tmp_path_factory.mktemp("preannotated")
    cfg = compose_config([f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", f"input={scans}"], "preannotate")
    preannotate(cfg, out)
    return out


def test_export_then_import_reproduces_the_predicted_masks_exactly(exported, trained_run, labels, tmp_path):
    """What the tool gets back unedited becomes annotations/<id>.png in raw values, equal to predict's mask."""
    from heritage_seg.tasks.predict import predict

    document = json.loads((exported / "annotations.json").read_text())
    assert [i["file_name"] for i in document["images"]] == ["new_20.png", "new_21.png"]
    assert all(a["iscrowd"] == 1 and isinstance(a["segmentation"]["counts"], str) for a in document["annotations"])
    root = tmp_path / "collection"
    result = _import(exported / "annotations.json", root)
    assert result["imported"] == ["new_20", "new_21"]
    predicted = tmp_path / "predicted"
    cfg = compose_config(
        [f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", f"input={exported / 'images'}"], "predict"
    )
    predict(cfg, predicted)
    for sample_id in ("new_20", "new_21"):
        ids = np.asarray(Image.open(predicted / f"{sample_id}_mask.png"))
        raw = np.asarray(Image.open(root / "annotations" / f"{sample_id}.png"))
        np.testing.assert_array_equal(labels.encode(raw), ids)
    rows = list(csv.DictReader((root / "metadata.csv").open()))
    assert [r["id"] for r in rows] == ["new_20", "new_21"]
    assert sorted(r.id for r in open_reader(root).records()) == ["new_20", "new_21"]  # training reads it


def test_an_edit_made_in_the_tool_arrives_as_made_and_nothing_is_overwritten_silently(exported, labels, tmp_path):
    document = json.loads((exported / "annotations.json").read_text())
    # the annotator draws a Cracks polygon over the top-left corner of the first scan, as CVAT exports polygons
    cracks = labels.names.index("Cracks")
    document["annotations"].append(
        {
            "id": 10**6,
            "image_id": 1,
            "category_id": cracks,
            "iscrowd": 0,
            "segmentation": [[0, 0, 40, 0, 40, 30, 0, 30]],
        }
    )
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    root = tmp_path / "collection"
    _import(edited, root, f"images={exported / 'images'}")
    raw = np.asarray(Image.open(root / "annotations" / "new_20.png"))
    assert (raw[2:28, 2:38] == labels.raw_values[cracks]).all()
    before = (root / "annotations" / "new_20.png").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        _import(exported / "annotations.json", root)
    assert (root / "annotations" / "new_20.png").read_bytes() == before
    _import(exported / "annotations.json", root, "overwrite=true")
    assert (root / "annotations" / "new_20.png").read_bytes() != before
    assert [r["id"] for r in csv.DictReader((root / "metadata.csv").open())] == ["new_20", "new_21"]  # no doubles


def test_unknown_class_names_and_size_mismatches_are_refused_before_anything_is_written(exported, tmp_path):
    document = json.loads((exported / "annotations.json").read_text())
    renamed = json.loads(json.dumps(document))
    renamed["categories"][0]["name"] = "Mould"
    (tmp_path / "renamed.json").write_text(json.dumps(renamed))
    images = f"images={exported / 'images'}"
    with pytest.raises(ValueError, match=r"renamed.json: class name\(s\) \['Mould'\] are not in the label map"):
        _import(tmp_path / "renamed.json", tmp_path / "a", images)
    resized = tmp_path / "resized"
    shutil.copytree(exported / "images", resized)
    Image.open(resized / "new_21.png").resize((100, 100)).save(resized / "new_21.png")
    with pytest.raises(ValueError, match=r"image new_21.png: the file says 150 x 110 px, .* is 100 x 100"):
        _import(exported / "annotations.json", tmp_path / "b", f"images={resized}")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a readable COCO JSON file"):
        _import(tmp_path / "broken.json", tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")
