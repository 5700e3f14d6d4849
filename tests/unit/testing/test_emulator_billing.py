"""What the emulator billed (testing/emulator_billing.py), from results lines as it writes them.

Invariants: only succeeded lines bill, with every usage figure they report (cache writes by TTL,
reads, web searches); dollars are the provider's cost formula at batch prices, priced when
asked; a model without a price makes the cost unknown and is named. Over HTTP, and against
the SDK's downloads, in test_emulator_state.py and test_emulator_app.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.testing.emulator_billing import TOKEN_FIELDS, Billing


def _succeeded(model: str, **usage: Any) -> dict[str, Any]:
    return {"custom_id": "r", "result": {"type": "succeeded", "message": {"model": model, "usage": usage}}}


PRICES = PriceTable.load({"m": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0.2, "web_search": 10}})


def test_only_succeeded_lines_bill_every_figure_they_report() -> None:
    billing = Billing()
    billing.add_line(
        _succeeded(
            "m",
            input_tokens=100,
            output_tokens=20,
            cache_creation_input_tokens=1_000,
            cache_read_input_tokens=0,
            cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_000},
            server_tool_use={"web_search_requests": 2, "web_fetch_requests": 0},
        )
    )
    billing.add_line(_succeeded("m", input_tokens=50, output_tokens=10, cache_read_input_tokens=1_000))
    for kind in ("errored", "expired", "canceled"):
        billing.add_line({"custom_id": "x", "result": {"type": kind}})
    billing.batches = 1
    report = billing.report(PRICES)
    assert (report["batches"], report["requests"]) == (1, 2)
    assert [report[name] for name in TOKEN_FIELDS] == [150, 30, 1_000, 1_000, 1_000, 2]
    # By hand, per million: 150 x $2 + 30 x $10 + 1,000 x $4 (an hour's write is 2x input)
    # + 1,000 x $0.2, halved; and two searches at $10 per 1,000, which are not halved.
    expected = (150 * 2 + 30 * 10 + 1_000 * 4 + 1_000 * 0.2) / 1_000_000 / 2 + 2 * 10 / 1_000
    assert report["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert report["by_model"]["m"]["cost_usd"] == report["cost_usd"] and report["unpriced_models"] == []


def test_an_unpriced_model_makes_the_cost_unknown_and_a_clear_starts_over() -> None:
    billing = Billing()
    billing.add_line(_succeeded("m", input_tokens=10, output_tokens=10))
    billing.add_line(_succeeded("house-model", input_tokens=10, output_tokens=10))
    report = billing.report(PRICES)
    assert report["cost_usd"] is None and report["unpriced_models"] == ["house-model"]
    assert report["by_model"]["m"]["cost_usd"] == pytest.approx((10 * 2 + 10 * 10) / 1_000_000 / 2, abs=1e-9)
    priced = billing.report(PriceTable.load(PRICES.prices, {"house-model": {"input": 1, "output": 1}}))
    assert priced["cost_usd"] is not None and priced["unpriced_models"] == []  # priced when asked
    billing.clear()
    assert billing.report(PRICES) == {
        "batches": 0,
        "requests": 0,
        **dict.fromkeys(TOKEN_FIELDS, 0),
        "cost_usd": 0.0,
        "unpriced_models": [],
        "by_model": {},
        "contents": 0,
        "contents_billed_twice": 0,
    }


def test_the_ledger_by_content_counts_the_same_work_billed_twice() -> None:
    from airflow_provider_claude_batch.testing.emulator_requests import StoredRequest

    def request(custom_id: str, digest: int, max_tokens: int = 8) -> StoredRequest:
        return StoredRequest(custom_id, "m", max_tokens, 10, digest, None)

    billing = Billing()
    billing.add_contents([request("a", 1), request("b", 2)])
    billing.add_contents([request("a-again", 1), request("c", 2, max_tokens=9)])  # another id, same work
    assert list(billing.billed_twice().values()) == [2]
    report = billing.report(PRICES)
    assert (report["contents"], report["contents_billed_twice"]) == (3, 1)
    billing.clear()
    assert billing.report(PRICES)["contents"] == 0
