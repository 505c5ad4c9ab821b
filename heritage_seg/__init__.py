"""heritage_seg: U-Net damage segmentation of cultural-heritage images, compared across encoder families.

Map of the package (README, "Layout"):

      entry points (python -m heritage_seg.<name>; thin: compose, build from the library, run, print where)
        train.py  evaluate.py  predict.py  aggregate.py  lr_find.py  export.py
      shared by the entry points
        runtime.py        device, precision, datamodule and module construction (entry points never import each other)
        rundir.py         the run folder: its file names, run identity, bookkeeping overrides, claiming it
        checkpoints.py    checkpoint files written (atomic, fast) -> trained module, run config, label map
        files.py          atomic writes (text, JSON, pictures, whole folders)
        cli.py, errors.py user errors -> one line and exit code 2
      data/               labels (the label map, its clean class), readers (parquet / folder), cache (both
                          protocols, masks as stored), crops (random training crops), folds, sample data,
                          datamodule, download
      the model and its training
        models.py         smp U-Net per encoder, weights policy, normalisation
        losses.py         Dice + Focal (smp's numbers, no GPU syncs); class weighting strategies -> weights
        augment.py        device-side batch flips / 90° turns
        module.py         the LightningModule
        callbacks.py      per-epoch log line, end-of-fit evaluation of the best checkpoint
      scoring and pictures
        metrics.py        one confusion matrix -> IoU, Dice, precision, recall, F1
        tta.py            test-time transforms, exact inverses, probability averaging
        scoring.py        dataset-level evaluation loop and the metrics.json schema
        sliding.py        sliding windows, blending (scans: strip-bounded; cached images: whole), per protocol
        native.py         scoring at the annotation's own resolution (bilinear upsampling in bounded strips)
        damage.py         one scan's damage statistics (per class, connected regions) and report.csv rows
        reports.py        plots, prediction panels, the damage overlay and palette masks
        html.py           self-contained HTML pages (embedded pictures, sortable tables);  scan_page.py: predict's
        study/            comparing runs: runs.py (find, group), stats.py (folds, pairs, baseline), render.py
                          (markdown, LaTeX, chart), page.py (report.html)
      deployment
        onnx_export.py    ONNX graph and its onnxruntime check;  model_card.py: model_card.md
"""
