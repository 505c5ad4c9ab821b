"""Paths on the command line: accepted as the tool printed them, printed so that they paste back (issue 25)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from heritage_seg.core.cli import _PLAIN, accept_printed_paths, override
from tests.conftest import REPO

PARSER = OverridesParser.create()


def _value(arg: str):
    return PARSER.parse_override(arg).value()


@pytest.fixture()
def legacy_sweep(tmp_path):
    """Two run folders named as sweeps named them before issue 25."""
    runs = [tmp_path / "multirun" / f"encoder=convnext,fold={fold}" for fold in (0, 1)]
    for run in runs:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    return runs


def test_an_existing_path_hydra_would_misread_is_quoted_for_it(legacy_sweep):
    run0, run1 = legacy_sweep
    ckpt0, ckpt1 = (str(r / "checkpoints" / "best.ckpt") for r in legacy_sweep)
    argv = accept_printed_paths(
        ["prog", f"ckpt={ckpt0}", f"hydra.run.dir={run0}/evaluate", f"runs={run0.parent}", "tta=true"]
    )
    assert [_value(a) for a in argv[1:]] == [ckpt0, f"{run0}/evaluate", str(run0.parent), True]
    (ensemble,) = accept_printed_paths(["prog", f"ckpt=[{ckpt0},{ckpt1}]"])[1:]
    assert _value(ensemble) == [ckpt0, ckpt1]


def test_sweeps_and_anything_that_is_not_a_path_are_left_to_hydra(tmp_path):
    argv = [
        "prog",
        "-m",
        "encoder=convnext,mit_b3",
        "fold=0,1",
        "hydra/launcher=submitit_local",
        f"ckpt={tmp_path}/no=such,folder/best.ckpt",  # Hydra's own error says what is wrong
        f"data.root={tmp_path}",
        "'ckpt=already,quoted'",
    ]
    assert accept_printed_paths(list(argv)) == argv


@pytest.mark.parametrize(
    "value",
    [
        "multirun/2026-12-02/10-00-00-123456/encoder-convnext+fold-0/checkpoints/best.ckpt",
        "multirun/x/encoder=convnext,fold=0/checkpoints/best.ckpt",
        "/data/my scans/it's here",
        "C:\\scans\\",
        'a "quoted" $HOME `x` !',
    ],
)
def test_a_printed_option_pastes_into_a_shell_and_hydra_as_it_is(value):
    printed = override("ckpt", value)
    (word,) = shlex.split(printed)
    assert _value(word) == value
    if _PLAIN.match(value):
        assert printed == f"ckpt={value}", "plain paths are printed plain"


def test_the_plain_characters_mean_nothing_to_hydra_or_a_shell():
    plain = "".join(chr(c) for c in range(32, 127) if _PLAIN.match(chr(c)))
    assert _value(f"k=a{plain}b") == f"a{plain}b"
    assert shlex.quote(f"a{plain}b") == f"a{plain}b"


def test_a_message_names_the_packaged_config_file_a_group_choice_was_read_from():
    """The configs are read as the package heritage_seg.conf: an error about a group names its file there."""
    from hydra.core.hydra_config import HydraConfig

    from heritage_seg.core.cli import config_file
    from heritage_seg.core.configs import compose

    cfg = compose("train", ["run_dir=."], return_hydra_config=True)  # before HydraConfig.instance(): compose resets it
    HydraConfig.instance().set_config(cfg)
    try:
        assert Path(config_file("labels")).resolve() == (REPO / "conf" / "labels" / "artefact.yaml").resolve()
    finally:
        HydraConfig.instance().cfg = None
