"""The API's limits and the custom_id rule."""

from __future__ import annotations

import pytest

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def test_custom_ids_are_checked_against_the_api_rule_naming_where() -> None:
    assert limits.validate_custom_id("row-1_A") == "row-1_A"
    assert limits.validate_custom_id("x" * 64) == "x" * 64
    with pytest.raises(ClaudeBatchInputError, match=r"custom_id \(row 7\) is 'a b'"):
        limits.validate_custom_id("a b", where="row 7")
    with pytest.raises(ClaudeBatchInputError, match="1-64 characters"):
        limits.validate_custom_id("x" * 65)
    with pytest.raises(ClaudeBatchInputError, match="must be a string, got int 5"):
        limits.validate_custom_id(5)


def test_the_envelope_and_the_limits_are_the_apis() -> None:
    assert len(b'{"requests":[]}') == limits.CREATE_ENVELOPE_BYTES
    assert limits.MAX_REQUESTS_PER_BATCH == 100_000 and limits.MAX_BYTES_PER_BATCH == 256 * 1024 * 1024
    assert limits.LIST_PAGE_MAX == 1000
