"""Three fixed seeds of the fault soak, small, on the LocalExecutor deployment (PostgreSQL, S3
behind the fault proxy, a triggerer): the same runner and oracles as ``python3 dev.py soak``.
Between them they kill a submit after its create and the triggerer holding the waits; run a
second DAG and a backfill over overlapping rows; fail S3 requests; refuse creates (429, 500),
feed through a full queue and rerun a run that succeeded (see docs/soak.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.runner import describe_failure, run_seed, soak_deployment

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1500)]

CI_SEEDS = (3, 4, 5)


def test_three_fixed_seeds_hold_every_invariant(tmp_path: Path) -> None:
    bodies: dict[str, str] = {}
    with soak_deployment(tmp_path, "local") as deployment:
        results = [run_seed(deployment, seed, small=True, every_body=bodies) for seed in CI_SEEDS]
    failures = [describe_failure(result, "local", small=True) for result in results if not result.held]
    assert not failures, "\n".join(failures)
    fired = {kind for result in results for kind in result.kinds_fired}
    assert "process:kill-submit-after-create" in fired and "people:second-dag-same-work-dir" in fired
