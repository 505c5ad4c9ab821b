"""Both ARTeFACT forms read into the same cached arrays; every bad input names the file."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import build_cache, load_cache
from heritage_seg.data.readers import (
    FolderReader,
    ParquetReader,
    open_reader,
    source_id_of,
)
from tests.helpers import make_folder, make_parquet_from_folder


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_source_id_groups_augmented_copies_and_tiles():
    assert source_id_of("abc_aug2") == "abc"
    assert source_id_of("abc_tile3_aug1") == "abc"
    assert source_id_of("a_b_c") == "a_b_c"


def test_folder_and_parquet_forms_give_identical_data(tmp_path, labels):
    folder = make_folder(tmp_path / "folder")
    parquet = make_parquet_from_folder(folder, tmp_path / "hub")
    readers = [open_reader(folder), open_reader(parquet)]
    assert isinstance(readers[0], FolderReader) and isinstance(readers[1], ParquetReader)
    loaded = [load_cache(build_cache(r, Protocol("squash", 32), labels, tmp_path / "cache")) for r in readers]
    for data in loaded:
        assert data.images.shape == (5, 32, 32, 3) and data.images.dtype == np.uint8
        assert data.masks.shape == (5, 32, 32)
        assert set(np.unique(data.masks)) == {0, 9, 255}  # raw 9 -> class id 9 (Cracks), 255 stays ignore
        assert [r.source_id for r in data.records if r.id.startswith("img0")] == ["img0", "img0"]
    assert loaded[0].ids == loaded[1].ids
    np.testing.assert_array_equal(loaded[0].images, loaded[1].images)
    np.testing.assert_array_equal(loaded[0].masks, loaded[1].masks)
    assert loaded[0].records[1].material == "Paper"  # an _aug copy inherits its source's metadata


def test_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, labels):
    folder = make_folder(tmp_path / "folder", n=2, aug=False)
    first = build_cache(open_reader(folder), Protocol("squash", 32), labels, tmp_path / "cache")
    assert build_cache(open_reader(folder), Protocol("squash", 32), labels, tmp_path / "cache") == first
    mask = np.zeros((40, 48), np.uint8)
    Image.fromarray(mask, mode="L").save(folder / "annotations" / "img1.png")
    second = build_cache(open_reader(folder), Protocol("squash", 32), labels, tmp_path / "cache")
    assert second != first
    assert (load_cache(second).masks[1] == 0).all()


def test_missing_root_suggests_download_and_sample(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root=.*nope.*heritage_seg.download.*data=sample"):
        open_reader(tmp_path / "nope")


def test_root_of_neither_form_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(ValueError, match="neither form"):
        open_reader(tmp_path / "stuff")


def _cache(folder, labels, tmp_path):
    return build_cache(open_reader(folder), Protocol("squash", 32), labels, tmp_path / "cache")


def test_corrupt_image_is_named(tmp_path, labels):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    (folder / "images" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"img1\.png: cannot decode"):
        _cache(folder, labels, tmp_path)
    assert not list((tmp_path / "cache").glob("folder-*")), "no half-written cache may remain"


def test_mask_of_other_size_is_named(tmp_path, labels):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(folder / "annotations" / "img1.png")
    with pytest.raises(ValueError, match=r"img1\.png: image is 48x40 but its mask is 10x10"):
        _cache(folder, labels, tmp_path)


def test_mask_values_outside_label_map_are_named(tmp_path, labels):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    mask = np.zeros((40, 48), np.uint8)
    mask[0, 0] = 77
    Image.fromarray(mask, mode="L").save(folder / "annotations" / "img0.png")
    with pytest.raises(ValueError, match=r"img0\.png.*mask values \[77\] are not in the label map"):
        _cache(folder, labels, tmp_path)


def test_colour_mask_is_refused_with_a_hint(tmp_path, labels):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(folder / "annotations" / "img0.png")
    with pytest.raises(ValueError, match=r"img0\.png.*annotation_rgb"):
        _cache(folder, labels, tmp_path)


def test_image_without_annotation_is_named(tmp_path):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    (folder / "annotations" / "img1.png").unlink()
    with pytest.raises(ValueError, match=r"no annotation for image id\(s\) \['img1'\]"):
        open_reader(folder)


def test_parquet_without_the_schema_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "data" / "train-0.parquet")
    with pytest.raises(ValueError, match=r"train-0\.parquet: missing column\(s\) \['annotation', 'image'\]"):
        open_reader(tmp_path)


@pytest.mark.slow
def test_sample_data_is_deterministic_and_read_by_the_folder_reader(tmp_path, labels, sample_root):
    from heritage_seg.data.sample import generate_sample

    again = generate_sample(tmp_path / "again", labels)
    for sub in ("images", "annotations"):
        for path in sorted((sample_root / sub).iterdir()):
            assert (again / sub / path.name).read_bytes() == path.read_bytes()
    reader = open_reader(sample_root)
    records = reader.records()
    assert len(records) == 48 and len({r.source_id for r in records}) == 40
    data = load_cache(build_cache(reader, Protocol("squash", 64), labels, tmp_path / "cache"))
    counts = data.class_pixel_counts(labels.num_classes)
    assert (counts[1:] > 0).sum() >= 8, "sample data must show many damage classes"
    assert (data.masks == labels.ignore_index).any(), "sample data must include unannotated (255) pixels"


def test_sample_generation_never_overwrites_a_foreign_folder(tmp_path, labels):
    from heritage_seg.data.sample import generate_sample

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="left untouched"):
        generate_sample(tmp_path / "mine", labels)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffid,material,content\nimg0,Paper,Line art\n",  # UTF-8 byte-order mark (Excel's "CSV UTF-8")
        "id, material, content\nimg0, Paper, Line art\n",  # spaces after the commas
        "ID;Material;Content\nimg0;Paper;Line art\n",  # ';' as some locales write it
    ],
)
def test_metadata_csv_is_read_as_spreadsheets_write_it(tmp_path, text):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    (folder / "metadata.csv").write_text(text, encoding="utf-8")
    info = {r.id: r for r in open_reader(folder).records()}
    assert (info["img0"].material, info["img0"].content) == ("Paper", "Line art")
    assert info["img1"].material == "unknown"


def test_metadata_csv_without_an_id_column_says_what_it_read(tmp_path):
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    (folder / "metadata.csv").write_text("name,material\nimg0,Paper\n")
    with pytest.raises(ValueError, match=r"metadata.csv: needs an 'id' column.*\['name', 'material'\]"):
        open_reader(folder)


def test_changing_the_source_id_pattern_rebuilds_the_cache(tmp_path, labels):
    folder = make_folder(tmp_path / "f", n=3)
    default = load_cache(build_cache(open_reader(folder), Protocol("squash", 32), labels, tmp_path / "cache"))
    assert {r.source_id for r in default.records} == {"img0", "img1", "img2"}
    per_file = open_reader(folder, r"^(?P<source>.+)$")  # every file its own source
    data = load_cache(build_cache(per_file, Protocol("squash", 32), labels, tmp_path / "cache"))
    assert {r.source_id for r in data.records} == {"img0", "img0_aug1", "img1", "img2"}


def test_exif_orientation_is_applied_to_images_not_to_masks(tmp_path, labels):
    """A portrait phone photo stored landscape with Orientation=6 (rotate 90° clockwise to view)."""
    folder = make_folder(tmp_path / "f", n=2, aug=False)
    stored = np.zeros((40, 48, 3), np.uint8)
    stored[:, :8] = 255  # a white band on the stored left edge: the top edge as viewers show it
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(folder / "images" / "img0.jpg", exif=exif, quality=95)
    (folder / "images" / "img0.png").unlink()
    mask = np.zeros((48, 40), np.uint8)  # annotated on the image as viewed: portrait
    Image.fromarray(mask, mode="L").save(folder / "annotations" / "img0.png")
    data = load_cache(build_cache(open_reader(folder), Protocol("squash", 32), labels, tmp_path / "cache"))
    image = data.images[data.ids.index("img0")]
    assert image[:4].mean() > 200 and image[-4:].mean() < 50, "the white band must be at the top, as viewed"


def test_float_images_in_the_unit_range_are_not_black():
    from heritage_seg.data.imageio import to_rgb

    ramp = np.tile(np.linspace(0.0, 1.0, 16, dtype=np.float32), (4, 1))
    rgb = np.asarray(to_rgb(Image.fromarray(ramp, mode="F"), "ramp.tif"))
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 <= rgb[0, 8, 0] <= 140
    wide = np.asarray(to_rgb(Image.fromarray(ramp * 200, mode="F"), "wide.tif"))
    assert wide[0, -1, 0] == 200, "floats already on a 0..255 scale keep it"


def test_thin_sample_profile_has_one_thin_class_at_about_one_percent(tmp_path, labels):
    from heritage_seg.data.sample import generate_sample

    root = generate_sample(tmp_path / "thin", labels, num_images=24, num_augmented=0, profile="thin", image_px=96)
    again = generate_sample(tmp_path / "again", labels, num_images=24, num_augmented=0, profile="thin", image_px=96)
    masks = [np.asarray(Image.open(p)) for p in sorted((root / "annotations").iterdir())]
    assert all(
        (again / "annotations" / p.name).read_bytes() == p.read_bytes() for p in (root / "annotations").iterdir()
    )
    assert all(m.shape == (96, 96) for m in masks)
    values = set(np.unique(np.concatenate([np.unique(m) for m in masks])))
    assert values == {0, 9}, "only Clean and Cracks (raw 9): every other class absent"
    share = np.mean([(m == 9).mean() for m in masks])
    assert 0.005 < share < 0.02
    assert 0 < sum((m == 9).any() for m in masks) < len(masks), "most images hold cracks, some none"
    from scipy import ndimage

    depth = np.concatenate([ndimage.distance_transform_edt(m == 9)[m == 9] for m in masks])
    assert (depth > 2).mean() < 0.05, "2-3 px lines: only where lines cross is a pixel > 2 px from the edge"
