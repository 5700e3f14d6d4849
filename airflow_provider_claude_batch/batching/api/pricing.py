"""Token usage -> US dollars: one price table, with the Message Batches discount applied.

Prices are the synchronous API's list prices in USD per million tokens; batch requests cost
``BATCH_DISCOUNT`` of them. A model is priced by its own id or by the id without an alias
suffix (a date ``-20250929``, ``-latest``, ``-0``): never by a shorter prefix, because a new
model (``claude-opus-4-8``) is not priced like an old one it happens to start with
(``claude-opus-4``). An unknown model has an unknown cost (``None``), never zero. Override or extend the table without a code change: Airflow's
``[claude_batch] prices`` option (``AIRFLOW__CLAUDE_BATCH__PRICES``, read by
:func:`airflow_provider_claude_batch.config.price_table`) holds the JSON inline or the path of a
JSON file: ``{"my-model": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3}}``
(and optionally ``"web_search"``, USD per 1,000 searches).

Server tools: a web search costs ``WEB_SEARCH_PER_1K`` per 1,000 searches on top of its tokens
(``usage.server_tool_use.web_search_requests``), a fee per call that the batch discount does
not halve; a web fetch costs its tokens only. Thinking tokens are part of ``output_tokens``
and priced with them.

The saving against the synchronous API is written once, in :func:`sync_api_cost` and
:func:`batch_saving`: the discount halves tokens, never the per-call fees, so the same requests
cost twice their batch token cost plus the same fees synchronously, and the saving is the
token cost alone (the fees kept apart by the caller, e.g. ``results.web_search_fee_usd``).

The cost formula is written once, in :meth:`ModelPrice.cost`: tokens of each kind times their
price, per million, at the batch discount. It takes plain numbers (a ceiling, a test) or numpy
arrays (a block of result rows) alike, so every dollar figure of the provider comes from it.
This module imports neither pyarrow nor the request renderer: the submit task's budget check
and the triggerer need only the table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

if TYPE_CHECKING:
    import numpy as np

BATCH_DISCOUNT = 0.5
PER_TOKEN = 1 / 1_000_000
#: USD per 1,000 web searches (server tool), the published fee; not discounted for batches.
WEB_SEARCH_PER_1K = 10.0
#: What may follow a priced model id in an alias of the same model.
_ALIAS_SUFFIX = re.compile(r"-(?:\d{8}|latest|0)$")

#: Token counts: plain numbers, or numpy arrays of one block of result rows.
Tokens = TypeVar("Tokens", float, "np.ndarray")


@dataclass(frozen=True)
class ModelPrice:
    """Synchronous list prices, USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    #: USD per 1,000 web searches (not per million tokens, and not halved for batches).
    web_search: float = WEB_SEARCH_PER_1K

    @property
    def cache_write_1h_extra(self) -> float:
        """What a 1-hour cache write costs beyond ``cache_write`` (the 5-minute rate that
        ``cache_creation_input_tokens`` is priced at): the published 1-hour rate is 2x input."""
        return max(0.0, self.input * 2 - self.cache_write)

    @classmethod
    def from_input_output(cls, input: float, output: float) -> ModelPrice:
        # Anthropic's published ratios: 5-minute cache writes 1.25x input, cache reads 0.1x.
        return cls(input, output, round(input * 1.25, 6), round(input * 0.1, 6))

    def cost(
        self,
        input_tokens: Tokens,
        output_tokens: Tokens,
        cache_write_tokens: Tokens,
        cache_read_tokens: Tokens,
        *,
        cache_write_1h_tokens: Tokens | float = 0.0,
        web_search_requests: Tokens | float = 0.0,
        batch: bool = True,
    ) -> Tokens:
        """USD for these tokens, at the batch discount unless ``batch=False``. The one cost
        formula: numbers in, a number out; arrays in, an array out. ``cache_write_tokens``
        are all cache writes (the API's ``cache_creation_input_tokens``);
        ``cache_write_1h_tokens``, the part of them written for an hour, cost the difference
        to the 1-hour rate on top. ``web_search_requests`` add their per-call fee, undiscounted."""
        dollars = PER_TOKEN * (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_write_tokens * self.cache_write
            + cache_read_tokens * self.cache_read
            + cache_write_1h_tokens * self.cache_write_1h_extra
        )
        return (dollars * BATCH_DISCOUNT if batch else dollars) + self.web_search_fee(web_search_requests)

    def web_search_fee(self, web_search_requests: Tokens | float) -> Tokens | float:
        """USD for this many web searches: a fee per call, the same at batch and synchronous prices."""
        return web_search_requests * (self.web_search / 1000)


#: Published list prices (synchronous API) as of the provider's release; override as above.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice.from_input_output(5, 25),
    "claude-opus-4-5": ModelPrice.from_input_output(5, 25),
    "claude-opus-4-1": ModelPrice.from_input_output(15, 75),
    "claude-opus-4": ModelPrice.from_input_output(15, 75),
    "claude-sonnet-4-6": ModelPrice.from_input_output(3, 15),
    "claude-sonnet-4-5": ModelPrice.from_input_output(3, 15),
    "claude-sonnet-4": ModelPrice.from_input_output(3, 15),
    "claude-3-7-sonnet": ModelPrice.from_input_output(3, 15),
    "claude-3-5-sonnet": ModelPrice.from_input_output(3, 15),
    "claude-haiku-4-5": ModelPrice.from_input_output(1, 5),
    "claude-3-5-haiku": ModelPrice.from_input_output(0.8, 4),
    "claude-3-haiku": ModelPrice.from_input_output(0.25, 1.25),
    "claude-3-opus": ModelPrice.from_input_output(15, 75),
}


@dataclass(frozen=True)
class Usage:
    """One request's usage as the API reports it, with every part the cost formula prices:
    ``cache_creation_1h_input_tokens`` is the part of the cache writes written for an hour
    (``usage.cache_creation.ephemeral_1h_input_tokens``), ``web_search_requests`` the searches
    (``usage.server_tool_use.web_search_requests``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    web_search_requests: int = 0


class PriceTable:
    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._by_model: dict[str, ModelPrice | None] = {}

    @classmethod
    def load(cls, *overrides: Mapping[str, Any] | str | None) -> PriceTable:
        """The default table, updated from each of ``overrides`` in turn (a mapping, a JSON
        string or a JSON file path; None skipped)."""
        table = cls()
        for source in overrides:
            if source:
                table.prices.update(_parse_prices(source))
        return table

    def price(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        if model not in self._by_model:
            alias = _ALIAS_SUFFIX.search(model)
            base = model[: alias.start()] if alias else None
            self._by_model[model] = self.prices.get(model) or (self.prices.get(base) if base else None)
        return self._by_model[model]

    def cost(self, model: str | None, usage: Usage, *, batch: bool = True) -> float | None:
        """USD of one request's ``usage`` (None for a model without a price): the one formula
        (:meth:`ModelPrice.cost`) with every part of the usage, as the results' ``cost_usd``."""
        price = self.price(model)
        if price is None:
            return None
        return float(
            price.cost(
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
                cache_write_1h_tokens=usage.cache_creation_1h_input_tokens,
                web_search_requests=usage.web_search_requests,
                batch=batch,
            )
        )


def _parse_prices(source: Mapping[str, Any] | str) -> dict[str, ModelPrice]:
    if isinstance(source, str):
        text = source.strip()
        if not text.startswith("{"):
            try:
                text = Path(text).read_text()
            except OSError as exc:
                raise ClaudeBatchInputError(f"cannot read the price table {source!r}: {exc}") from None
        try:
            source = json.loads(text)
        except ValueError as exc:
            raise ClaudeBatchInputError(f"the price table is not valid JSON: {exc}") from None
    assert isinstance(source, Mapping)
    parsed: dict[str, ModelPrice] = {}
    for model, value in source.items():
        try:
            if isinstance(value, ModelPrice):
                parsed[model] = value
                continue
            if "cache_write" in value or "cache_read" in value:
                price = ModelPrice(
                    float(value["input"]),
                    float(value["output"]),
                    float(value["cache_write"]),
                    float(value["cache_read"]),
                )
            else:
                price = ModelPrice.from_input_output(float(value["input"]), float(value["output"]))
            if "web_search" in value:
                price = replace(price, web_search=float(value["web_search"]))
            parsed[model] = price
        except (KeyError, TypeError, ValueError) as exc:
            raise ClaudeBatchInputError(
                f"price of model {model!r} needs numbers for input and output (and optionally cache_write, "
                f"cache_read) in USD per million tokens (web_search: USD per 1,000 searches): {exc!r}"
            ) from None
    return parsed


def sync_api_cost(batch_cost: float, *, per_call_fees: float) -> float:
    """What requests that cost ``batch_cost`` at batch prices cost on the synchronous API.
    ``per_call_fees`` is the part of ``batch_cost`` that is fees per call (web searches): the
    batch discount does not halve them, so the synchronous API charges the same fees, not twice."""
    return (batch_cost - per_call_fees) / BATCH_DISCOUNT + per_call_fees


def batch_saving(batch_cost: float, *, per_call_fees: float) -> float:
    """What the batch discount saved against the synchronous API: the tokens' share only."""
    return sync_api_cost(batch_cost, per_call_fees=per_call_fees) - batch_cost


#: Tools the service runs itself: their results come back as input tokens (and a web search
#: adds its fee), in amounts that nothing in the request bounds.
SERVER_TOOLS = ("web_search", "web_fetch", "code_execution")


class _CacheControl(msgspec.Struct):
    ttl: str | None = None


class _Block(msgspec.Struct):
    """A system, message or tool block, read only for its cache breakpoint, its type and the
    blocks inside it (a ``tool_result``'s content)."""

    type: str | None = None
    cache_control: _CacheControl | None = None
    content: str | list[_Block] | None = None


class _Message(msgspec.Struct):
    content: str | list[_Block] = ""


class _PricedParams(msgspec.Struct):
    #: The request-level breakpoint (automatic caching of the longest cacheable prefix).
    cache_control: _CacheControl | None = None
    system: str | list[_Block] | None = None
    tools: list[_Block] | None = None
    messages: list[_Message] = []
    mcp_servers: list[Any] | None = None


class _PricedLine(msgspec.Struct):
    params: _PricedParams


_decode_priced = msgspec.json.Decoder(_PricedLine).decode


@dataclass
class RequestTally:
    """The most one model's requests of a run can use: every token of a request's input
    covers at least one byte of its JSON line, and no answer is longer than its max_tokens.
    Counted by the renderer as it writes the requests; priced by :func:`cost_ceiling`.

    Two things in a request change what its bytes can cost, and :meth:`add` reads them from
    the line itself, so every counter of requests (the renderer, the reuse plan) sees them the
    same way: a cache breakpoint with a 1-hour TTL (those tokens cost 2x input, dearer than
    the 5-minute write), and server tools, whose results no request bounds."""

    requests: int = 0
    input_bytes: int = 0
    max_output_tokens: int = 0
    #: Some request writes the cache for an hour: any input token may cost the 1-hour rate.
    hour_cache_writes: bool = False
    #: Server tools (or MCP servers) some request uses: the most the requests can cost is unknown.
    server_tools: set[str] = field(default_factory=set)

    def add(self, line: bytes, max_tokens: int) -> None:
        """Count one request: its JSON line (without the newline) and its max_tokens."""
        self.requests += 1
        self.input_bytes += len(line)
        self.max_output_tokens += max_tokens
        self.note(line)

    def note(self, line: bytes) -> None:
        """Record what in this request line changes the ceiling (its bytes are not counted). A
        shape this cannot read (the API would refuse it) is priced at the dearest input."""
        try:
            params = _decode_priced(line).params
        except msgspec.ValidationError:
            self.hour_cache_writes = True
            return
        tools = params.tools or []
        blocks = [*tools, *(params.system if isinstance(params.system, list) else [])]
        for message in params.messages:
            if isinstance(message.content, list):
                blocks += message.content
        breakpoints = [params.cache_control]
        while blocks:
            block = blocks.pop()
            breakpoints.append(block.cache_control)
            if isinstance(block.content, list):
                blocks += block.content
        if any(point is not None and point.ttl == "1h" for point in breakpoints):
            self.hour_cache_writes = True
        self.server_tools.update(t.type for t in tools if t.type and t.type.startswith(SERVER_TOOLS))
        if params.mcp_servers:
            self.server_tools.add("mcp_servers")


def cost_ceiling(tallies: Mapping[str, RequestTally], prices: PriceTable) -> tuple[float | None, list[str]]:
    """The most a run's requests can cost at batch prices: each input byte a token (priced as
    the dearest cache write the requests can make where that costs more than plain input) and
    every answer at its max_tokens. None when it cannot be known, with why: a model without a
    price, or server tools whose results add input tokens and fees that no request bounds."""
    unknown = [f"model {model} has no price" for model in sorted(tallies) if prices.price(model) is None]
    tools = sorted({tool for tally in tallies.values() for tool in tally.server_tools})
    if tools:
        unknown.append(f"requests use server tools ({', '.join(tools)}) whose results no request bounds")
    if unknown:
        return None, unknown
    dollars = 0.0
    for model, tally in tallies.items():
        price = prices.price(model)
        assert price is not None
        write = price.cache_write + (price.cache_write_1h_extra if tally.hour_cache_writes else 0.0)
        dearest_input = replace(price, input=max(price.input, write))
        dollars += dearest_input.cost(tally.input_bytes, tally.max_output_tokens, 0, 0)
    return dollars, []
