"""Resubmission rounds: requests that ended for a transient reason are sent again.

Round 0 is one batch per chunk. After a round ends, every request of it that ended
``expired``, ``canceled`` or ``errored`` with a retryable error type (overloaded, api, rate limit) is
copied, byte for byte from the chunk's saved request body, into a new request file and a new
batch of round ``r + 1`` for that chunk, up to ``max_retry_rounds``. Requests that failed for
a reason a retry cannot fix (``invalid_request_error``) are never resubmitted, except a
``file_id`` the API no longer knows ("File not found"): the next create uploads it again.
A request's final outcome is the one from the highest round that included it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.api.results import decode_result_line
from airflow_provider_claude_batch.batching.render.chunks import ChunkBody, request_id
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError


def is_retryable(result_type: str, error_type: str | None, message: str | None = None) -> bool:
    """Whether sending the request again may change its outcome: expired, canceled, a transient
    error, or a referenced file the API no longer knows (its create uploads the file again,
    ``uploads``). A canceled request never ran and was not billed: the batch was canceled
    under it, most often by this provider when a deferred wait was killed (a clear of the run
    while it waited). A run that is landing wants its rows answered: landed as ``canceled``
    they were lost to a clear (the fault soak's seed 10: 21 rows)."""
    if result_type in ("expired", "canceled"):
        return True
    if result_type != "errored":
        return False
    if error_type in limits.RETRYABLE_ERROR_TYPES:
        return True
    return error_type == "invalid_request_error" and limits.FILE_NOT_FOUND in (message or "")


def retryable_ids(lines: Iterable[bytes]) -> list[str]:
    """custom_ids of the result lines whose outcome a resubmission may change."""
    found = []
    for line in lines:
        if not line:
            continue
        outcome = decode_result_line(line)
        if is_retryable(outcome.result.type, outcome.error_type, outcome.error_message):
            found.append(outcome.custom_id)
    return found


def records_by_chunk(manifest: Manifest) -> dict[int, list[BatchRecord]]:
    grouped: dict[int, list[BatchRecord]] = {}
    for record in manifest.batches:
        grouped.setdefault(record.chunk, []).append(record)
    return {chunk: sorted(records, key=lambda r: r.round) for chunk, records in sorted(grouped.items())}


def plan_next_round(
    manifest: Manifest,
    run_dir: RunDir | StoragePath,
    max_retry_rounds: int,
    *,
    also_retry: Callable[[Iterable[bytes]], Iterable[str]] | None = None,
) -> list[BatchRecord]:
    """Write the request files of the next round and return its (not yet created) records.

    Empty when nothing is retryable or the rounds are used up. Needs every record's raw
    results saved (``results_file``). ``also_retry`` names more custom_ids to resend from a
    round's result lines (answers that do not match the output schema).
    """
    run_dir = RunDir.of(run_dir)
    new_records: list[BatchRecord] = []
    for chunk, records in records_by_chunk(manifest).items():
        latest = records[-1]
        if latest.round >= max_retry_rounds:
            continue
        if latest.results_file is None:
            raise ClaudeBatchManifestError(f"{latest.label} has no saved results yet")
        with (run_dir / latest.results_file).open("rb") as handle:
            retry = set(retryable_ids(iter_file_lines(handle)))
        if also_retry is not None:
            with (run_dir / latest.results_file).open("rb") as handle:
                retry.update(also_retry(iter_file_lines(handle)))
        if not retry:
            continue
        next_round = latest.round + 1
        base = records[0]
        requests_file = RunDir.round_requests_file(next_round, chunk)
        target = run_dir / requests_file
        target.parent.mkdir(parents=True, exist_ok=True)
        body = ChunkBody()
        with (run_dir / base.requests_file).open("rb") as source, target.open("wb") as out:
            for line in iter_file_lines(source):
                if request_id(line) in retry:
                    out.write(body.add(line))
        new_records.append(
            BatchRecord(
                chunk=chunk,
                round=next_round,
                requests_file=requests_file,
                request_count=body.count,
                body_bytes=body.body_bytes,
                sha256=body.sha256,
            )
        )
    return new_records


def final_rounds(run_dir: RunDir | StoragePath, records: list[BatchRecord]) -> dict[str, int]:
    """For one chunk: the round each resubmitted custom_id last went out in (ids absent from
    the result stayed in round 0). Read from each round's saved results, which hold one line per
    request sent, so re-landing needs no request file of a later round."""
    run_dir = RunDir.of(run_dir)
    final: dict[str, int] = {}
    for record in records:
        if record.round == 0:
            continue
        if record.results_file is None:
            raise ClaudeBatchManifestError(f"{record.label} has no saved results yet")
        with (run_dir / record.results_file).open("rb") as handle:
            for custom_id in map(request_id, filter(None, iter_file_lines(handle))):
                final[custom_id] = max(record.round, final.get(custom_id, 0))
    return final
