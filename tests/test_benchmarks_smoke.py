"""The benchmark scripts at tiny sizes, so they cannot rot. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


#: The benchmarks in two groups of about equal time, run side by side (this test is one of CI's
#: longest, and the suite's other worker is often idle at its end).
GROUPS = (("p1", "p2", "p5"), ("p3", "p4", "p6", "p7"))


# The processes' own bound (600 s below), not the suite's 300 s: with the suite on two workers
# the two benchmark groups share the cores with another test file.
@pytest.mark.timeout(600)
def test_every_benchmark_runs_at_smoke_size() -> None:
    assert sorted(sum(GROUPS, ())) == ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "--smoke", *(arg for name in group for arg in ("--only", name))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in GROUPS
    ]
    outputs = [process.communicate(timeout=600) for process in running]
    for process, (out, err) in zip(running, outputs, strict=True):
        assert process.returncode == 0, out[-3000:] + err[-3000:]
    done = subprocess.CompletedProcess(args=[], returncode=0, stdout="".join(out for out, _ in outputs))
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
    # P7's oracle: the alternative ran without the provider (hidden), the other cases with it.
    assert "Airflow alone, a DAG of EmptyOperators: {" in done.stdout and "'provider_loaded': 0.0" in done.stdout
    assert "with the provider, example_dags/claude_batch_support_tickets.py: {" in done.stdout
    assert "'provider_loaded': 1.0" in done.stdout
