"""A seed's schedule is a function of the seed alone: the same seed replays the same faults, and
the seeds between them draw every fault kind the soak knows."""

from __future__ import annotations

import subprocess
import sys

from tests.soak.schedule import API_FAULTS, PEOPLE_FAULTS, PROCESS_FAULTS, draw, replay_command


def test_the_same_seed_draws_the_same_schedule_in_another_process() -> None:
    code = "from tests.soak.schedule import draw; print(draw(17).describe())"
    elsewhere = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert elsewhere.strip() == draw(17).describe()
    assert draw(17).describe() != draw(18).describe()


def test_fifty_seeds_draw_every_kind_of_fault() -> None:
    kinds = {kind for seed in range(1, 51) for kind in draw(seed).kinds()}
    assert {f"process:{k}" for k in PROCESS_FAULTS} <= kinds
    assert {f"people:{k}" for k in PEOPLE_FAULTS} <= kinds
    assert {kind.split(":")[1] for kind in kinds if kind.startswith("api:") and kind.count(":") == 2} >= set(API_FAULTS)
    assert {"storage:s3-failing", "storage:s3-slow", "api:list-stale", "api:queue-full"} <= kinds
    assert {"people:second-dag-same-work-dir", "people:backfill-overlapping-rows"} <= kinds


def test_a_failing_seed_is_replayed_by_one_command() -> None:
    assert replay_command(7, "celery") == "python3 dev.py soak --first-seed 7 --seeds 1 --shape celery"


def test_a_list_of_seeds_reads_as_written() -> None:
    from tests.soak.__main__ import seed_list

    assert seed_list("6,9,10,14-17") == [6, 9, 10, 14, 15, 16, 17]
