"""Resubmission rounds planned from real request and result files (batching/land/rounds.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.land.rounds import (
    final_rounds,
    is_retryable,
    plan_next_round,
    records_by_chunk,
)
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError
from tests.unit.conftest import manifest_of


def _request(custom_id: str) -> bytes:
    return json.dumps({"custom_id": custom_id, "params": {"model": "m", "max_tokens": 8}}).encode()


def _result(custom_id: str, outcome: str) -> bytes:
    kind, _, error_type = outcome.partition(":")
    result: dict[str, object] = {"type": kind}
    if kind == "errored":
        result["error"] = {"type": "error", "error": {"type": error_type, "message": "x"}}
    return json.dumps({"custom_id": custom_id, "result": result}).encode()


def _chunk(run_dir: Path, chunk: int, outcomes: dict[str, str]) -> BatchRecord:
    requests_file, results_file = f"requests-1/chunk-{chunk:05d}.jsonl", f"raw/msgbatch_{chunk}.jsonl"
    for name, lines in (
        (requests_file, map(_request, outcomes)),
        (results_file, map(_result, outcomes, outcomes.values())),
    ):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(b"".join(line + b"\n" for line in lines))
    return BatchRecord(
        chunk=chunk,
        round=0,
        requests_file=requests_file,
        request_count=len(outcomes),
        body_bytes=0,
        sha256="",
        batch_id=f"msgbatch_{chunk}",
        results_file=results_file,
    )


def test_only_transient_failures_go_out_again_byte_for_byte(tmp_path: Path) -> None:
    outcomes = {
        "a": "succeeded",
        "b": "expired",
        "c": "errored:overloaded_error",
        "d": "errored:invalid_request_error",  # a retry cannot fix it
        "e": "errored:api_error",
    }
    manifest = manifest_of([_chunk(tmp_path, 0, outcomes), _chunk(tmp_path, 1, {"z": "succeeded"})])
    (planned,) = plan_next_round(manifest, tmp_path, max_retry_rounds=2)
    assert (planned.chunk, planned.round, planned.requests_file) == (0, 1, "round-01/chunk-00000.jsonl")
    body = (tmp_path / planned.requests_file).read_bytes()
    assert body == b"".join(_request(i) + b"\n" for i in ("b", "c", "e"))
    # Recorded as the create call will send it: {"requests":[b,c,e]}.
    create_body = b'{"requests":[' + body.rstrip(b"\n").replace(b"\n", b",") + b"]}"
    assert planned.request_count == 3 and planned.body_bytes == len(create_body)


def test_a_file_the_api_no_longer_knows_is_retryable_and_other_invalid_requests_are_not() -> None:
    """Sent again, the request's file is uploaded again (``uploads``); a bad request stays bad."""
    message = "messages.0.content.0.source.file_id: File not found: file_01x"
    assert is_retryable("errored", "invalid_request_error", message)
    assert not is_retryable("errored", "invalid_request_error", "max_tokens: too large")
    assert not is_retryable("errored", "invalid_request_error", None)
    assert is_retryable("canceled", None) and is_retryable("expired", None) and not is_retryable("succeeded", None)
    assert not is_retryable("succeeded", None, message)


def test_no_round_past_the_limit_and_none_without_failures(tmp_path: Path) -> None:
    manifest = manifest_of([_chunk(tmp_path, 0, {"a": "expired"})])
    assert plan_next_round(manifest, tmp_path, max_retry_rounds=0) == []
    clean = manifest_of([_chunk(tmp_path, 1, {"a": "succeeded"})])
    assert plan_next_round(clean, tmp_path, max_retry_rounds=2) == []


def test_a_round_needs_the_results_of_the_last_one(tmp_path: Path) -> None:
    record = _chunk(tmp_path, 0, {"a": "expired"})
    record.results_file = None
    with pytest.raises(ClaudeBatchManifestError, match="round 0 chunk 0 has no saved results yet"):
        plan_next_round(manifest_of([record]), tmp_path, max_retry_rounds=2)


def test_each_request_lands_from_the_last_round_it_went_out_in(tmp_path: Path) -> None:
    base = _chunk(tmp_path, 0, {"a": "succeeded", "b": "expired", "c": "expired"})
    manifest = manifest_of([base])
    (first,) = plan_next_round(manifest, tmp_path, max_retry_rounds=2)
    first.batch_id, first.results_file = "msgbatch_r1", "raw/msgbatch_r1.jsonl"
    (tmp_path / first.results_file).write_bytes(_result("b", "succeeded") + b"\n" + _result("c", "expired") + b"\n")
    manifest.batches.append(first)
    (second,) = plan_next_round(manifest, tmp_path, max_retry_rounds=2)
    assert second.round == 2 and (tmp_path / second.requests_file).read_bytes() == _request("c") + b"\n"
    second.batch_id, second.results_file = "msgbatch_r2", "raw/msgbatch_r2.jsonl"
    (tmp_path / second.results_file).write_bytes(_result("c", "succeeded") + b"\n")
    manifest.batches.append(second)
    assert records_by_chunk(manifest) == {0: [base, first, second]}
    assert final_rounds(tmp_path, records_by_chunk(manifest)[0]) == {"b": 1, "c": 2}
    assert plan_next_round(manifest, tmp_path, max_retry_rounds=2) == []  # rounds used up
