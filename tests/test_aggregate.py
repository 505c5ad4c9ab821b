"""Aggregation over fake run folders with known numbers: means, sample stds, TTA gain, paired differences."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.evaluation.metrics import segmentation_metrics
from heritage_seg.evaluation.scoring import metrics_payload
from heritage_seg.tasks.aggregate import aggregate
from tests.conftest import REPO
from tests.helpers import check_html_page, fake_run


@pytest.fixture()
def sweep(tmp_path):
    for fold, (a, a_tta, b) in enumerate([(0.50, 0.52, 0.40), (0.60, 0.61, 0.55), (0.70, 0.73, 0.65)]):
        fake_run(
            tmp_path,
            f"encoder=convnext,fold={fold}",
            ["encoder=convnext"],
            fold,
            a,
            a_tta,
            cracks=None if fold == 1 else 0.2 + 0.1 * fold,
        )
        fake_run(tmp_path, f"encoder=mit_b3,fold={fold}", ["encoder=mit_b3"], fold, b, b + 0.01, family="ViT")
    return tmp_path


def test_means_stds_tta_gain_and_paired_differences(sweep):
    summary = aggregate([sweep])
    conv, mit = summary["groups"]["encoder=convnext"], summary["groups"]["encoder=mit_b3"]
    assert conv["no_tta"]["miou"]["mean"] == pytest.approx(0.6)
    assert conv["no_tta"]["miou"]["std"] == pytest.approx(0.1)  # sample std over 3 folds
    assert conv["no_tta"]["miou"]["per_fold"] == {0: 0.5, 1: 0.6, 2: 0.7}
    assert conv["tta_gain_miou"]["mean"] == pytest.approx(0.02) and conv["tta_gain_miou"]["std"] == pytest.approx(0.01)
    assert mit["family"] == "ViT" and mit["no_tta"]["miou"]["mean"] == pytest.approx(1.6 / 3)
    # Cracks undefined on fold 1: mean over the two folds where it is defined
    assert conv["no_tta"]["per_class_iou"]["Cracks"]["mean"] == pytest.approx(0.3)
    assert conv["no_tta"]["per_class_iou"]["Cracks"]["n"] == 2
    (diff,) = summary["paired_differences"]
    assert (diff["a"], diff["b"]) == ("encoder=convnext", "encoder=mit_b3")
    assert diff["per_fold"] == pytest.approx([0.10, 0.05, 0.05])
    assert diff["mean"] == pytest.approx(0.2 / 3) and diff["std"] == pytest.approx(0.028867513, abs=1e-8)
    assert summary["warnings"] == []


def test_report_html_holds_the_study_and_every_picture_opens(sweep):
    """The tables with every fold, paired differences, per-class IoU, a confusion matrix per group (summed
    over folds) and the panels that evaluate left in a run folder, in one self-contained page."""
    for run in sweep.iterdir():
        metrics = json.loads((run / "metrics.json").read_text())
        fold = metrics["fold"]
        metrics["confusion_matrix"] = [[90 + fold, 10], [5, 5 + fold]]
        (run / "metrics.json").write_text(json.dumps(metrics))
    panel = sweep / "encoder=convnext,fold=0" / "evaluate" / "predictions" / "best01_img7_overlay.png"
    panel.parent.mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(panel)
    summary = aggregate([sweep])
    assert summary["groups"]["encoder=convnext"]["no_tta"]["confusion_matrix"] == [[273, 30], [15, 18]]
    page = check_html_page(sweep / "report.html")
    text = (sweep / "report.html").read_text()
    for expected in (
        "encoder=convnext",
        "encoder=mit_b3",
        "60.00 ± 10.00",
        "0: 50.00 / 1: 60.00 / 2: 70.00",
        "+10.00 / +5.00 / +5.00",
        "Per-class IoU",
        "Confusion matrices",
        "best01_img7_overlay.png",
    ):
        assert expected in text, expected
    # comparison chart, per-class chart, two confusion matrices, one panel
    assert len(page.images) == 5 and all(src.startswith("data:image/") for src in page.images)


def test_the_page_gives_the_evaluate_command_for_each_run_without_panels_ready_to_paste(sweep, tmp_path):
    """Issue 25: the hint was `ckpt=<run>/…`, which failed when pasted for a sweep run named `encoder=…,fold=…`."""
    import html
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    legacy = sweep / "encoder=mit_b3,fold=0"  # the name sweeps had before issue 25
    (legacy / "checkpoints").mkdir()
    (legacy / "checkpoints" / "best.ckpt").write_bytes(b"")
    aggregate([sweep])
    text = html.unescape((sweep / "report.html").read_text())
    (line,) = [ln for ln in text.splitlines() if ln.startswith("python -m heritage_seg.evaluate")]
    words = shlex.split(line)  # as a shell splits the pasted line
    assert words[:3] == ["python", "-m", "heritage_seg.evaluate"]
    parser = OverridesParser.create()
    assert [parser.parse_override(w).value() for w in words[3:]] == [
        str(legacy / "checkpoints" / "best.ckpt"),
        str(legacy / "evaluate"),
    ]


def test_what_each_group_started_from_is_recorded(sweep):
    """Issue 26: `init_from=` / `encoder.weights=` runs say what they started from, in the JSON, markdown, page."""
    for run in sweep.glob("encoder=mit_b3,*"):
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "started_from": "init_from /models/a.ckpt"}))
    summary = aggregate([sweep])
    assert summary["groups"]["encoder=mit_b3"]["started_from"] == ["init_from /models/a.ckpt"]
    assert summary["groups"]["encoder=convnext"]["started_from"] == ["unrecorded"]  # made before it was recorded
    line = "Started from: encoder=convnext: unrecorded; encoder=mit_b3: init_from /models/a.ckpt"
    assert line in (sweep / "cv_results.md").read_text()
    assert line in (sweep / "report.html").read_text()


def test_outputs_are_written_and_readable(sweep):
    aggregate([sweep])
    assert json.loads((sweep / "cv_results.json").read_text())["expected_folds"] == [0, 1, 2]
    markdown = (sweep / "cv_results.md").read_text()
    assert "| encoder=convnext | convnext | CNN | 60.00 ± 10.00 | 50.00 / 60.00 / 70.00 |" in markdown
    assert "| encoder=convnext | encoder=mit_b3 | 3 | 6.67 ± 2.89 |" in markdown
    with Image.open(sweep / "cv_comparison.png") as img:
        img.verify()
    tex = (sweep / "cv_results.tex").read_text()
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    # these fake runs have no miou_gt (and no confusion matrix to recompute it from): "--"
    assert "encoder=convnext & CNN & -- & 60.00 $\\pm$ 10.00 & -- & 62.00 $\\pm$ 10.54 &" in tex
    assert "encoder=mit\\_b3" in tex  # LaTeX special characters escaped
    body = tex[tex.index("\\midrule") : tex.index("\\bottomrule")]
    assert all(line.count("&") == 7 for line in body.splitlines()[1:])


def test_missing_folds_and_unfinished_runs_are_reported_loudly(sweep):
    fake_run(sweep, "loss=dice,fold=0", ["encoder=convnext", "loss=dice"], 0, 0.45)
    (sweep / "crashed" / ".hydra").mkdir(parents=True)
    (sweep / "crashed" / ".hydra" / "config.yaml").write_text("fold: 2\n")
    with pytest.warns(UserWarning, match="1 run folder.*no metrics.json.*crashed"):
        summary = aggregate([sweep])
    assert summary["warnings"] == [
        "group 'encoder=convnext,loss=dice' is missing fold(s) [1, 2]: its mean is over 1 fold(s) only"
    ]
    assert "## Warnings" in (sweep / "cv_results.md").read_text()


def test_no_finished_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        aggregate([tmp_path])


@pytest.mark.slow
def test_aggregate_command_line(sweep):
    proc = subprocess.run(
        [sys.executable, "-m", "heritage_seg.aggregate", f"runs={sweep}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Paired differences" in proc.stdout and (sweep / "cv_results.md").exists()


def test_ablation_table_pairs_every_level_against_the_default_config(tmp_path):
    """One sweep over loss=dice_focal,dice,focal: the default loss is the baseline, differences are paired."""
    values = {"dice_focal": [0.50, 0.60, 0.70], "dice": [0.45, 0.58, 0.62], "focal": [0.40, 0.61, 0.66]}
    for loss, per_fold in values.items():
        for fold, miou in enumerate(per_fold):
            fake_run(tmp_path, f"loss={loss},fold={fold}", ["encoder=convnext", f"loss={loss}"], fold, miou)
    summary = aggregate([tmp_path])
    assert summary["baseline"] == "encoder=convnext,loss=dice_focal"
    dice = summary["groups"]["encoder=convnext,loss=dice"]
    assert dice["label"] == "loss=dice" and dice["vs_baseline"]["per_fold"] == pytest.approx([-0.05, -0.02, -0.08])
    assert dice["vs_baseline"]["mean"] == pytest.approx(-0.05) and dice["vs_baseline"]["std"] == pytest.approx(0.03)
    focal = summary["groups"]["encoder=convnext,loss=focal"]["vs_baseline"]
    assert focal["mean"] == pytest.approx(-0.13 / 3) and focal["per_fold"] == pytest.approx([-0.10, 0.01, -0.04])
    markdown = (tmp_path / "cv_results.md").read_text()
    assert "| loss=dice_focal | convnext | CNN | 60.00 ± 10.00 | 50.00 / 60.00 / 70.00 | - | - | baseline |" in markdown
    assert "| loss=dice | convnext | CNN | 55.00 ± 8.89 | 45.00 / 58.00 / 62.00 | - | - | -5.00 ± 3.00 |" in markdown
    assert aggregate([tmp_path], baseline="loss=dice")["baseline"] == "encoder=convnext,loss=dice"


def test_both_means_are_reported_and_older_metrics_get_miou_gt_from_their_confusion_matrix(tmp_path):
    """A fold where the model also predicts an absent class: strict and truth-class means differ, both shown."""
    for fold in range(2):
        run = fake_run(tmp_path, f"encoder=convnext,fold={fold}", ["encoder=convnext"], fold, miou=0.0)
        payload = json.loads((run / "metrics.json").read_text())
        # Clean 90/100 right, Cracks 5/10, 5 clean pixels called "Hair" (absent from the truth)
        cm = [[90, 5, 5], [5, 5, 0], [0, 0, 0]]
        m = segmentation_metrics(cm)
        payload.update(miou=m["miou"], confusion_matrix=cm)  # an older metrics.json: no miou_gt key
        (run / "metrics.json").write_text(json.dumps(payload))
    summary = aggregate([tmp_path])
    group = summary["groups"]["encoder=convnext"]["no_tta"]
    assert group["miou_gt"]["mean"] == pytest.approx(np.mean([90 / 105, 5 / 15]))
    assert group["miou"]["mean"] == pytest.approx(np.mean([90 / 105, 5 / 15, 0.0]))
    markdown = (tmp_path / "cv_results.md").read_text()
    assert "classes present in the validation truth" in markdown and "strict mIoU" in markdown
    assert f"| {100 * group['miou_gt']['mean']:.2f} ± 0.00 |" in markdown
    assert f"| {100 * group['miou']['mean']:.2f} ± 0.00 |" in markdown


def test_one_fold_has_no_std_and_a_group_running_the_defaults_is_the_baseline(tmp_path):
    fake_run(tmp_path, "plain,fold=0", [], 0, 0.5, family="?")
    fake_run(tmp_path, "loss=dice,fold=0", ["loss=dice"], 0, 0.4)
    summary = aggregate([tmp_path])
    plain = summary["groups"]["(defaults)"]
    assert plain["no_tta"]["miou"]["std"] is None, "the std of one fold is undefined, not 0"
    assert summary["baseline"] == "(defaults)" and plain["label"] == "(defaults)"
    dice = summary["groups"]["loss=dice"]
    assert dice["vs_baseline"]["per_fold"] == pytest.approx([-0.1])
    markdown = (tmp_path / "cv_results.md").read_text()
    assert "| (defaults) | convnext | ? | 50.00 (1 fold, no std) |" in markdown and "± 0.00" not in markdown


def test_only_runs_validated_on_the_same_images_are_paired(tmp_path):
    """split=material (6 folds) beside the 3-fold baseline: same fold numbers, other validation images."""

    def with_splits(run, val_ids):
        (run / "splits.json").write_text(json.dumps({"val_ids": val_ids}))

    for fold in range(3):
        for encoder in ("convnext", "mit_b3"):
            run = fake_run(tmp_path, f"encoder={encoder},fold={fold}", [f"encoder={encoder}"], fold, 0.5 + fold / 10)
            with_splits(run, [f"src{fold}", f"src{fold + 3}"])
    for fold in range(6):
        run = fake_run(tmp_path, f"material,fold={fold}", ["encoder=convnext", "split=material"], fold, 0.3)
        payload = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**payload, "n_folds": 6}))
        with_splits(run, [f"material{fold}"])
    summary = aggregate([tmp_path])
    assert not any("missing fold" in w for w in summary["warnings"]), summary["warnings"]
    assert summary["groups"]["encoder=convnext,split=material"]["expected_folds"] == list(range(6))
    pairs = {(d["a"], d["b"]): d for d in summary["paired_differences"]}
    same = pairs[("encoder=convnext", "encoder=mit_b3")]
    assert same["folds"] == [0, 1, 2] and same["unpaired_folds"] == []
    other = pairs[("encoder=convnext", "encoder=convnext,split=material")]
    assert other["folds"] == [] and other["unpaired_folds"] == [0, 1, 2] and other["mean"] is None
    assert any("fold(s) [0, 1, 2] were validated on different images" in w for w in summary["warnings"])


def test_runs_differing_only_in_where_their_data_or_folder_is_form_one_group(tmp_path):
    """data.root, data.cache_dir, resume and hydra.* are bookkeeping (the config's exclude_keys), not a setting."""
    for fold, extra in enumerate(
        [
            ["data.root=/mnt/a"],
            ["data.root=/scratch/b", "resume=auto"],
            ["data.cache_dir=/tmp/c", "hydra.launcher.partition=gpu"],
        ]
    ):
        fake_run(tmp_path, f"run{fold}", ["encoder=convnext", *extra], fold, 0.5 + fold / 10)
    summary = aggregate([tmp_path])
    assert list(summary["groups"]) == ["encoder=convnext"]
    assert summary["groups"]["encoder=convnext"]["folds"] == [0, 1, 2]


@pytest.mark.slow
def test_split_material_trains_on_other_materials_and_the_aggregate_reports_each_held_out_one(tmp_path, sample_root):
    from heritage_seg.tasks.train import train
    from tests.conftest import compose_config, tiny_train_overrides

    for fold in (0, 5):
        run_dir = tmp_path / "sweep" / f"material_fold{fold}"
        cfg = compose_config(tiny_train_overrides(run_dir, sample_root) + ["split=material", f"fold={fold}"])
        train(cfg)
        (run_dir / ".hydra" / "overrides.yaml").write_text(f"- split=material\n- fold={fold}\n")
        splits = json.loads((run_dir / "splits.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert splits["split"] == "material" and splits["n_folds"] == 6 and metrics["n_folds"] == 6
        assert metrics["held_out"] == splits["held_out"] == sorted(splits["groups"])[fold]
        assert not set(splits["train_sources"]) & set(splits["val_sources"])
    summary = aggregate([tmp_path / "sweep"])
    assert "missing fold(s) [1, 2, 3, 4]" in summary["warnings"][0]
    (group,) = summary["groups"].values()
    assert group["held_out"] == {0: "Canvas", 5: "Wood"}
    assert "| split=material | Canvas |" in (tmp_path / "sweep" / "cv_results.md").read_text().replace(
        "(defaults)", "split=material"
    )


def test_native_and_input_size_figures_are_both_reported_and_mixing_them_is_flagged(tmp_path):
    sweep = tmp_path / "sweep"
    for fold, (native, squashed) in enumerate(((0.30, 0.40), (0.32, 0.44))):
        run = fake_run(sweep, f"a{fold}", ["encoder=convnext"], fold, native)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics.update(
            resolution="native",
            max_side=None,
            train_resolution={
                "miou": squashed,
                "miou_gt": squashed,
                "pixel_accuracy": 0.9,
                "mean_dice": squashed + 0.1,
                "per_class": {"Clean": {"iou": 0.9}, "Cracks": {"iou": 0.1}},
            },
        )
        (run / "metrics.json").write_text(json.dumps(metrics))
    summary = aggregate([sweep])
    (group,) = summary["groups"].values()
    assert group["resolution"] == "native" and not any("mixes" in w for w in summary["warnings"])
    assert group["no_tta"]["miou"]["mean"] == pytest.approx(0.31)
    assert group["train_resolution"]["miou"]["mean"] == pytest.approx(0.42)
    markdown = (sweep / "cv_results.md").read_text()
    assert "each mask's own resolution" in markdown and "scored at the model's input size" in markdown
    assert "| 42.00 ± 2.83 |" in markdown

    fake_run(sweep, "a2", ["encoder=convnext"], 2, 0.5)  # an older run: scored at the input size only
    summary = aggregate([sweep])
    assert any("mixes runs scored at the masks' own resolution and at the input size" in w for w in summary["warnings"])


def test_damage_vs_clean_and_coarse_groups_are_summarised_over_folds_and_paired_against_the_baseline(tmp_path):
    """Issue 28: metrics.json's `binary` and `coarse` blocks, as evaluate writes them, reach every output."""
    labels = LabelMap.from_config(yaml.safe_load((REPO / "conf" / "labels" / "artefact.yaml").read_text()))
    rng = np.random.default_rng(0)
    expected: dict[str, list[float]] = {}
    for loss in ("dice_focal", "dice"):
        for fold in range(3):
            cm = rng.integers(0, 50, (16, 16))
            cm[0, 0] = 5000
            run = fake_run(tmp_path, f"loss={loss},fold={fold}", ["encoder=convnext", f"loss={loss}"], fold, 0.5)
            payload = {**json.loads((run / "metrics.json").read_text()), **metrics_payload(cm, labels, fold=fold)}
            payload.update(n_folds=3, encoder="convnext", family="CNN")
            (run / "metrics.json").write_text(json.dumps(payload))
            damage = cm[1:, 1:].sum()  # any damage called any damage
            expected.setdefault(loss, []).append(damage / (cm.sum() - cm[0, 0]))
    summary = aggregate([tmp_path])
    base, dice = summary["groups"]["encoder=convnext,loss=dice_focal"], summary["groups"]["encoder=convnext,loss=dice"]
    assert base["no_tta"]["binary"]["iou"]["per_fold"] == pytest.approx(dict(enumerate(expected["dice_focal"])))
    assert base["no_tta"]["binary"]["iou"]["std"] == pytest.approx(np.std(expected["dice_focal"], ddof=1))
    assert dice["vs_baseline_binary_iou"]["per_fold"] == pytest.approx(
        np.subtract(expected["dice"], expected["dice_focal"])
    )
    assert list(base["no_tta"]["coarse"]["groups"]) == [name for name, _ in labels.groups]
    assert dice["vs_baseline_coarse_miou_gt"]["n"] == 3

    mean, std = 100 * np.mean(expected["dice"]), 100 * np.std(expected["dice"], ddof=1)
    markdown = (tmp_path / "cv_results.md").read_text()
    assert "## Any damage vs clean" in markdown and "## Coarse groups of damage" in markdown
    assert f"| loss=dice | convnext | {mean:.2f} ± {std:.2f} |" in markdown
    assert "| Loss of material | Cracks and deformation |" in markdown
    latex = (tmp_path / "cv_results.tex").read_text()
    assert "\\label{tab:cv-damage}" in latex and f"{mean:.2f} $\\pm$ {std:.2f}" in latex
    assert latex.count("\\begin{table}") == 2 and "Coarse mIoU" in latex
    page = (tmp_path / "report.html").read_text()
    assert "Any damage vs clean" in page and f"{mean:.2f} ± {std:.2f}" in page and "Imaging artefacts" in page
    check_html_page(tmp_path / "report.html")


def test_the_baseline_panels_open_a_viewer_comparing_every_group_on_that_image(sweep):
    """Issue 29: where two encoders disagree, as layers: the baseline's best image of fold 0 with the truth,
    both groups' predictions (the other from its evaluate's predictions/masks/<id>.png), where each is wrong and
    where the two disagree; the study page links to it and to each panel's own viewer."""
    import re

    from heritage_seg.reporting.figures import palette_mask

    classes = [{"name": "Clean", "raw": 0, "color": "#000000"}, {"name": "Cracks", "raw": 1, "color": "#0000a6"}]
    labels = LabelMap.from_config({"classes": classes, "ignore_index": 255})
    truth = np.zeros((40, 60), np.uint8)
    truth[10:20, 10:50] = 1
    conv = truth.copy()
    conv[30:35, 5:15] = 1  # convnext: a false crack
    mit = truth.copy()
    mit[10:20, 40:50] = 0  # mit_b3: misses the right end of the crack
    for name in ("encoder=convnext,fold=0", "encoder=mit_b3,fold=0"):
        config = yaml.safe_dump({"fold": 0, "labels": {"classes": classes, "ignore_index": 255}})
        (sweep / name / ".hydra" / "config.yaml").write_text(config)
    pred_dir = sweep / "encoder=convnext,fold=0" / "evaluate" / "predictions"
    pred_dir.mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(pred_dir / "best01_img7_input.png")
    palette_mask(truth, labels).save(pred_dir / "best01_img7_gt.png")
    palette_mask(conv, labels).save(pred_dir / "best01_img7_pred.png")
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(pred_dir / "best01_img7_overlay.png")
    masks = sweep / "encoder=mit_b3,fold=0" / "evaluate" / "predictions" / "masks"
    masks.mkdir(parents=True)
    palette_mask(mit, labels).save(masks / "img7.png")
    aggregate([sweep])
    page = sweep / "compare" / "fold0_best01_img7_viewer.html"
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', page.read_text(), re.S)[1])
    layers = {layer["id"]: layer for layer in data["layers"]}
    assert [layers[k]["name"] for k in ("pred0", "pred1")] == [
        "Prediction: encoder=convnext",
        "Prediction: encoder=mit_b3",
    ]

    def box(layer):
        p = layers[layer]["pyramid"]
        return p["x"], p["y"], p["x"] + p["width"], p["y"] + p["height"]

    assert box("diff0") == (5, 30, 15, 35) and box("diff1") == (40, 10, 50, 20)
    assert box("disagree") == (5, 10, 50, 35)  # both places where the two models differ
    check_html_page(sweep / "report.html")  # every link, the comparison page's included, points at a file
    assert 'href="compare/fold0_best01_img7_viewer.html"' in (sweep / "report.html").read_text()
