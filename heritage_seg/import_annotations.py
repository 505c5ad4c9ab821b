"""Corrected annotations (COCO 1.0, e.g. exported from CVAT) back into an ARTeFACT-format folder:
    python -m heritage_seg.import_annotations annotations=<file.json> root=<folder>

The entry point only: the work is heritage_seg.tasks.import_annotations.import_annotations."""

from __future__ import annotations

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.tasks.import_annotations import import_annotations


@command("import_annotations")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    import_annotations(cfg)


if __name__ == "__main__":
    accept_printed_paths()
    main()
