"""heritage_seg: U-Net damage segmentation of cultural-heritage images, compared across encoder families.

The package in layers, highest first. A module imports only from its own layer or the layers below it
(pyproject.toml's import-linter contract, checked in CI), so data flows one way: configs -> entry point -> task ->
library -> run folder.

    train.py pretrain.py evaluate.py predict.py select.py preannotate.py import_annotations.py aggregate.py
    lr_find.py export.py download.py
                  entry points (python -m heritage_seg.<name>): @hydra.main around one task; nothing else
    tasks/        what each command does, as a function of its composed config (tests and benchmarks call these)
    deploy/       onnx (graph + onnxruntime check), model_card (model_card.md)
    study/        comparing runs: runs (find, group), overrides (bookkeeping vs experiment), stats (folds, pairs,
                  baseline), render (markdown, LaTeX, chart), page (aggregate's report.html)
    reporting/    figures (plots, panels, overlays, palette masks), damage (a scan's statistics), html (embedded
                  pictures), templating + templates/ (Jinja2: the report pages and the model card), scan_page
                  (predict's report.html), select_page (select's selection.html)
    training/     module (the LightningModule), losses (Dice + Focal, class weights), callbacks, build (datamodule
                  + module from a config), loggers (MLflow, W&B), optim (optimiser + schedule), trainer (resume,
                  checkpoint IO), pretext (masked-image modelling for pretrain)
    runs/         the run folder: folder (every output's file name), identity (what resume and ensembles compare),
                  claim (one run per folder, finished results never overwritten), records (the typed JSON
                  records, written and read through them), checkpoints (written atomically, resumed without
                  unpickling, a calibrated copy), model_folder (the model to share: config.json +
                  model.safetensors, written and checked), rebuild (a run's validation data from its record)
    annotation/   selection (which scans to annotate next: select's rule)
    evaluation/   metrics (one confusion matrix -> every figure), scoring (the evaluation loop, metrics.json),
                  native (scoring at each annotation's own resolution), calibration (ECE, reliability,
                  error per uncertainty bin, temperature scaling)
    inference/    tta (transforms and exact inverses, ensembles), sliding (windows, blending, per protocol), upsample
                  (probabilities to a scan's size in bounded strips), uncertainty (the views' disagreement),
                  mapping (one scan -> its maps, as predict and select size it),
                  segmenter (Segmenter: model(s) loaded on a device with TTA, mapping images: the commands' one
                  loader and the Python API)
    models/       unet (smp U-Net per encoder, the weights policy, normalisation), pretrained (pretrain's
                  pretrained.pt: written, checked, loaded), heads (heads=multitask: damage/clean and coarse heads),
                  stored (a .ckpt or model folder read without unpickling), trained (the network as inference
                  runs it, shared with the LightningModule; load_model)
    data/         labels (incl. coarse groups), readers (parquet / folder), imageio, cache (both protocols), crops,
                  augment, folds (leak-free folds, a run's fold choice), sample data, datasets (host and device),
                  preload (data.preload_to), loaders (the DDP sampler), datamodule (composing them), build (the
                  datamodule a run config describes),
                  progressive (training sizes by stage), unlabelled (images alone, for pretrain), coco
                  (pre-annotations out, corrections in: COCO RLE masks), download (fetching ARTeFACT:
                  python -m heritage_seg.download)
    core/         configs (where the packaged configs live, @command, resolvers, compose), sweep_names,
                  protocol (how training images were sized: the one type every layer reads, and the one
                  validator of sizes), errors (user errors
                  -> one line, exit 2), cli, files (atomic writes), geometry (padding, "longest side at most N"),
                  device (device, precision, CPU threads), hub (offline detection)

The Python API (what the commands use too): `from heritage_seg import Segmenter`, see docs/guide/python-api.md.
"""

__all__ = ["Segmenter"]


def __getattr__(name: str):
    """`heritage_seg.Segmenter`, imported on first use: the entry points (python -m heritage_seg.<name>) import this
    package first and must not pay for torch, smp and timm before their own work needs them."""
    if name == "Segmenter":
        from heritage_seg.inference.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'heritage_seg' has no attribute {name!r}")
