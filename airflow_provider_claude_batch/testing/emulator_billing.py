"""What the emulator billed: the tokens of the succeeded results it served, and their dollars at
batch prices, as ``/_emulator/state`` reports them under ``billed``.

Invariants:

* A batch is billed once, when its results file is rendered (its first results download, or
  the first ``/_emulator/state`` after it ended): the usage of its succeeded lines, per model,
  exactly as those lines report it. Errored, canceled and expired requests bill nothing, as on
  the API.
* Dollars come from the provider's own price table (:class:`PriceTable`, the emulator's
  ``prices`` over the defaults) and cost formula, at the batch discount, so they match the
  ``cost_usd`` a landing computes for the same rows. They are priced when asked: new
  ``prices`` reprice everything billed.
* A model without a price makes the cost unknown (``None``, never zero), and is named.
* The ledger by content (:meth:`Billing.add_contents`) counts how often each distinct request
  (model, ``max_tokens``, system and messages) was billed: a count above one is the same work
  paid twice, the oracle of the fault soak.
* Like the other counters, billing starts empty with the process and with a reset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_claude_batch.batching.api.pricing import PriceTable, Usage
from airflow_provider_claude_batch.testing.emulator_requests import StoredRequest, stable_int

#: The usage figures billed per model, in the order they are reported.
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_read_input_tokens",
    "web_search_requests",
)


def _usage_counts(usage: Mapping[str, Any]) -> dict[str, int]:
    """A result line's ``usage`` as the figures billed (absent parts count 0)."""
    creation = usage.get("cache_creation") or {}
    tools = usage.get("server_tool_use") or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_creation_1h_input_tokens": int(creation.get("ephemeral_1h_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
        "web_search_requests": int(tools.get("web_search_requests") or 0),
    }


@dataclass
class Billing:
    """Batches, requests and usage billed so far, per model."""

    batches: int = 0
    by_model: dict[str, Counter[str]] = field(default_factory=dict)
    #: Times billed per distinct request content (see :meth:`add_contents`).
    by_content: Counter[int] = field(default_factory=Counter)

    def add_line(self, line: Mapping[str, Any]) -> None:
        """Bill one results line (only a succeeded one costs anything)."""
        result = line.get("result") or {}
        if result.get("type") != "succeeded":
            return
        message = result["message"]
        billed = self.by_model.setdefault(str(message.get("model")), Counter())
        billed["requests"] += 1
        billed.update(_usage_counts(message.get("usage") or {}))

    def add_contents(self, succeeded: Iterable[StoredRequest]) -> None:
        """Count each billed request by its content (not its custom_id: a rerun sends the same
        work under the same id, a second DAG under another)."""
        self.by_content.update(stable_int(r.model, r.max_tokens, r.prompt_digest) for r in succeeded)

    def billed_twice(self) -> dict[int, int]:
        """Contents billed more than once, with how often."""
        return {content: times for content, times in self.by_content.items() if times > 1}

    def clear(self) -> None:
        self.batches = 0
        self.by_model.clear()
        self.by_content.clear()

    def report(self, prices: PriceTable) -> dict[str, Any]:
        """Totals and per-model figures, with ``cost_usd`` at batch prices (None when some model
        has no price: ``unpriced_models`` names them)."""
        total: Counter[str] = Counter()
        models: dict[str, dict[str, Any]] = {}
        cost: float | None = 0.0
        unpriced = []
        for model, billed in sorted(self.by_model.items()):
            total.update(billed)
            usage = Usage(**{name: billed[name] for name in TOKEN_FIELDS})
            dollars = prices.cost(model, usage)
            if dollars is None:
                unpriced.append(model)
            cost = None if cost is None or dollars is None else cost + dollars
            models[model] = {
                "requests": billed["requests"],
                **{name: billed[name] for name in TOKEN_FIELDS},
                "cost_usd": None if dollars is None else round(dollars, 6),
            }
        return {
            "batches": self.batches,
            "requests": total["requests"],
            **{name: total[name] for name in TOKEN_FIELDS},
            "cost_usd": None if cost is None else round(cost, 6),
            "unpriced_models": unpriced,
            "by_model": models,
            "contents": len(self.by_content),
            "contents_billed_twice": len(self.billed_twice()),
        }
