"""Fetch ARTeFACT's parquet shards:  python -m heritage_seg.data.download root=data/artefact

Online, `huggingface_hub.snapshot_download` does the work (resumable, only the shards). Offline, it fails
within seconds and says where to put files fetched elsewhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from heritage_seg.core.cli import accept_printed_paths, exit_on_user_error
from heritage_seg.core.configs import command
from heritage_seg.core.hub import hub_is_reachable

log = logging.getLogger(__name__)


class HubUnreachable(FileNotFoundError):
    pass


def download(root: str | Path, repo_id: str, revision: str = "main", pattern: str = "data/train-*.parquet") -> Path:
    root = Path(root).expanduser()
    if not hub_is_reachable():
        raise HubUnreachable(
            f"cannot reach the Hugging Face hub (offline, or HF_HUB_OFFLINE=1), so {repo_id} cannot be fetched. "
            f"On a machine with internet run `hf download {repo_id} --repo-type dataset "
            f"--include '{pattern}' --local-dir <folder>` (or this command), then copy the shards to "
            f"{root / pattern} and train with data.root={root}"
        )
    from huggingface_hub import snapshot_download

    log.info("downloading %s (%s) into %s — about 4 GB", repo_id, pattern, root)
    snapshot_download(
        repo_id=repo_id, repo_type="dataset", revision=revision, allow_patterns=[pattern], local_dir=str(root)
    )
    shards = sorted(root.glob(pattern))
    if not shards:
        raise FileNotFoundError(f"{root}: download finished but no file matches {pattern}")
    log.info("%d shard(s) in %s; train with: python -m heritage_seg.train data.root=%s", len(shards), root, root)
    return root


@command("download")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    download(cfg.root, cfg.repo_id, cfg.revision, cfg.pattern)


if __name__ == "__main__":
    accept_printed_paths()
    main()
