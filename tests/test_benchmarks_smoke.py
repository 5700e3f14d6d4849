"""The benchmark scripts at tiny sizes, so they cannot rot. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_at_smoke_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for case in (
        "P1 300 ours",
        "P1 300 tutorial",
        "P1 300 floor",
        "P1 300 the wire alone",
        "P2 requests only",
        "P3 our hook",
        "P3 SDK",
        "P4 2 triggers",
        "P5 classification",
        "P5 extraction",
        "P6 lookup",
        "P6 lookup, then fetch",
        "P6 keys",
        "P6 render alone",
        "P6 first run",
        "P6 rerun",
    ):
        assert case in done.stdout, case
    assert "'rows': 300" in done.stdout
    # P6's oracles: the lookup found exactly the stored share, the rerun sent only the rest.
    assert "'hits': 1800" in done.stdout
    assert "'new': 200, 'reused': 1800" in done.stdout
