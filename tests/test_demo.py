"""``python3 dev.py demo`` twice: the second invocation is a new DAG run of the same tickets and
finds every answer in the answer store, so it creates no batch and says what reuse saved.

The demo runs as a user runs it (a subprocess, real Airflow, the emulator it starts itself), in
its own AIRFLOW_HOME and output folder; each invocation starts a fresh emulator, so its
``batches created`` line counts that invocation's creates only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _demo(home: Path, output: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ANTHROPIC"))}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            *("--rows", "120", "--date", "2026-11-24"),
            *("--home", str(home), "--output", str(output)),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_second_demo_run_creates_no_batch(tmp_path: Path) -> None:
    home, output = tmp_path / "airflow", tmp_path / "out"
    first = _demo(home, output)
    # The batches created are split into the submit's (one per chunk: 120 rows are one) and the
    # land task's resubmission rounds, in the emulator's line and in the answers line alike.
    created = re.search(
        r"batches created: (\d+) \((\d+) by the submit task, one per chunk; (\d+) by the land task's "
        r"resubmission rounds of requests that failed transiently\)",
        first,
    )
    assert created is not None, first
    total, by_submit, by_rounds = map(int, created.groups())
    assert by_submit == 1 and total == by_submit + by_rounds
    assert (
        f"answers: 120 new, 0 reused, 0 deduplicated; reuse saved $0.0000; 1 batch(es) created by the submit "
        f"task, {by_rounds} more by resubmission rounds" in first
    )
    assert (
        "round 0 is the submit's batches; each later round resubmits the requests that failed" in first
        if by_rounds
        else "rounds: 1 (the submit's batches; no request needed resubmitting)" in first
    )
    # What the emulator billed is the spend a user sees in GET /_emulator/state.
    billed = re.search(r"Emulator billed: (\d+) input and (\d+) output tokens, \$(\S+) at batch prices", first)
    assert billed is not None and int(billed.group(1)) > 0 and float(billed.group(3)) > 0
    # The answers are structured: the demo prints typed rows (an enum label, a float confidence).
    assert "typed answers: 120 valid" in first
    typed = re.findall(r"\{'ticket_id': '[^']+', 'product': '[^']+', 'label': '(\w+)', 'confidence': ([0-9.]+),", first)
    assert len(typed) == 3 and all(label in {"Billing", "Technical", "Account", "Other"} for label, _ in typed)
    assert all(0 <= float(confidence) <= 1 for _, confidence in typed)

    second = _demo(home, output)
    runs = re.findall(r"DAG run (\S+): success", first + second)
    assert len(runs) == 2 and runs[0] != runs[1]  # a new DAG run of the same date
    assert "batches created: 0" in second
    assert "Emulator billed: 0 input and 0 output tokens, $0.0000 at batch prices" in second
    line = re.search(r"answers: 0 new, 120 reused, 0 deduplicated; reuse saved \$(\S+); no batch created", second)
    assert line is not None, second
    assert float(line.group(1)) > 0
    assert "(120 rows, " in second  # every row landed again
