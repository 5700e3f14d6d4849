"""Every Messages parameter is checked by name, type and range before a request is written."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_claude_batch.batching.api.request_params import check_params, known_params
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def test_valid_parameters_pass() -> None:
    check_params(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "temperature": 0.2,
            "top_k": 5,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "system": [{"type": "text", "text": "Be brief."}],
            "tools": [],
            "service_tier": "auto",
            "messages": "the renderer's to check",
        },
        where="request_params",
    )
    assert {"model", "max_tokens", "temperature", "top_p", "top_k"} <= known_params()


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"modle": "x"}, "'modle' is not a Messages API parameter"),
        ({"model": 123}, "model must be"),
        ({"max_tokens": 0}, "max_tokens must be"),
        ({"max_tokens": True}, "max_tokens must be"),
        ({"temperature": 1.5}, "temperature must be"),
        ({"stop_sequences": "STOP"}, "stop_sequences must be"),
        ({"service_tier": "premium"}, "service_tier must be"),
        ({"tool_choice": {"name": "x"}}, "tool_choice must be"),
    ],
)
def test_a_bad_parameter_is_named_with_where_it_came_from(params: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ClaudeBatchInputError, match=f"^row 3, params_column 'p': {complaint}"):
        check_params(params, where="row 3, params_column 'p'")
