"""``python3 dev.py test`` runs the suite on two pytest-xdist workers unless its arguments choose
otherwise: the workers halve CI's test time, and a developer keeps a way to run in one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dev  # noqa: E402


@pytest.mark.parametrize(
    "rest",
    [[], ["tests/unit", "-x"], ["-k", "reuse"], ["-p", "no:randomly"], ["--help"]],
)
def test_two_workers_taking_whole_files_by_default(rest: list[str]) -> None:
    assert dev.pytest_arguments(rest) == [*dev.XDIST, *rest]
    assert dev.XDIST[:4] == ["-n", "2", "--dist", "loadfile"]


@pytest.mark.parametrize(
    "rest",
    [["-n", "0"], ["-n0"], ["-n", "4", "tests/unit"], ["--numprocesses=auto"], ["-p", "no:xdist"], ["--pdb"]],
)
def test_the_callers_choice_of_workers_or_a_debugger_is_kept(rest: list[str]) -> None:
    assert dev.pytest_arguments(rest) == rest


def test_the_locked_environment_has_the_workers_plugin() -> None:
    """pytest refuses ``-n`` without pytest-xdist, also with ``--help``: this fails when the lock
    or the test extra loses the plugin."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *dev.pytest_arguments(["--help"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--dist" in done.stdout and "--no-loadscope-reorder" in done.stdout
