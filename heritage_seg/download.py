"""Fetch ARTeFACT's parquet shards:  python -m heritage_seg.download root=data/artefact

Online, `huggingface_hub.snapshot_download` does the work (resumable, only the shards). Offline, it fails
within seconds and says where to put files fetched elsewhere.

The entry point only: the work is heritage_seg.data.download.download. (`python -m heritage_seg.data.download`,
the earlier spelling, still runs this, with a line saying so.)"""

from __future__ import annotations

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.data.download import download


@command("download")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    download(cfg.root, cfg.repo_id, cfg.revision, cfg.pattern)


if __name__ == "__main__":
    accept_printed_paths()
    main()
