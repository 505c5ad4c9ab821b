"""The unit tier (`pytest -m unit`) is what it says in every run: a test that trains or starts a process without
requesting `trains` or `spawns` fails there, naming the fixture, instead of slowing the tier down unnoticed."""

from __future__ import annotations

INNER = """
import subprocess

import lightning as L


def test_fits():
    L.Trainer.fit(None)


def test_starts_a_process():
    subprocess.run(["true"])


def test_says_it_trains(trains):
    pass


def test_pure():
    assert 1 + 1 == 2
"""


def test_the_unit_tier_refuses_a_test_that_trains_or_starts_a_process_and_leaves_out_one_that_says_so(pytester):
    pytester.makeconftest(
        "from tests.conftest import (  # noqa: F401\n"
        "    _the_unit_tier_trains_and_spawns_nothing, pytest_collection_modifyitems, spawns, trains\n)\n"
    )
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-m", "unit", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*test_fits trains a model, but is in the unit tier: request the `trains` fixture*",
            "*test_starts_a_process starts a process, but is in the unit tier: request the `spawns` fixture*",
        ],
        consecutive=False,
    )
