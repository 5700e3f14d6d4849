"""One try of a submit task in a process of its own (so that two tries overlap as they do
after a clear): ``python -m tests.hostile.submit_try_process WORK_DIR TRY_NUMBER CONN_ID``.
Prints ``created N`` or the error's type and message as its last line."""

from __future__ import annotations

import logging
import sys

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submit.submission import Submission, SubmitTask
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from tests.hostile.try_fence_rows import ROWS, SPEC


def main(work_dir: str, try_number: str, conn_id: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    run_dir = WorkDir(work_dir).run("d", "r", "submit")
    submission = Submission(
        run_dir,
        SubmitTask("d", "r", "submit", -1, conn_id, try_number=int(try_number)),
        SPEC,
        ChunkLimits(max_requests=2),
        ClaudeBatchHook(conn_id, retry_backoff=0),
    )
    try:
        done = submission.submit(ROWS)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return
    print(f"created {len(done.created) if done else 0}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
