"""The emulator's ``/v1/models`` catalogue.

Invariants: every entry is a ``ModelInfo`` the SDK parses strictly; the list is newest first
(by ``created_at``, as the API orders it), ids are unique and each is priced by the provider's
price table; a dated id also answers to its alias; pages follow the API's cursor rules.
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import islice

import anthropic
import pytest
from anthropic.types import ModelInfo

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.testing.models_catalog import ALIASES, MODELS, find_model, model_info, models_page

IDS = [model_id for model_id, _, _ in MODELS]


def test_every_entry_is_a_model_info_the_sdk_parses_strictly() -> None:
    for entry in MODELS:
        info = ModelInfo.model_validate_json(json.dumps(model_info(*entry)), strict=True)
        assert (info.id, info.display_name, info.type, info.lifecycle) == (entry[0], entry[1], "model", "active")
        assert info.line is not None and f"-{info.line}-" in info.id


def test_the_catalogue_is_newest_first_with_unique_ids() -> None:
    released = [datetime.fromisoformat(created) for _, _, created in MODELS]
    assert released == sorted(released, reverse=True)
    assert len(set(IDS)) == len(IDS)


def test_every_model_is_priced_so_a_dag_tested_here_has_a_cost() -> None:
    prices = PriceTable()
    assert [model_id for model_id in IDS if prices.price(model_id) is None] == []


def test_aliases_resolve_to_the_dated_id() -> None:
    assert ALIASES["claude-haiku-4-5"] == "claude-haiku-4-5-20251001"
    assert set(ALIASES.values()) == {model_id for model_id in IDS if model_id[-8:].isdigit()}
    assert not set(ALIASES) & set(IDS)
    for alias, model_id in ALIASES.items():
        assert find_model(alias) == find_model(model_id) == model_info(*MODELS[IDS.index(model_id)])
    assert find_model("claude-sonnet-4-6") is not None  # an undated id is its own name
    assert find_model("claude-nonexistent-1") is None
    assert find_model("claude-haiku-4") is None  # a prefix is not an alias


def test_a_page_has_the_list_envelope_over_model_infos() -> None:
    page = models_page(2, None, None)
    assert [m["id"] for m in page["data"]] == IDS[:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (IDS[0], IDS[1], True)
    rest = models_page(20, IDS[1], None)
    assert [m["id"] for m in rest["data"]] == IDS[2:] and rest["has_more"] is False
    assert models_page(20, None, IDS[2])["data"] == [model_info(*entry) for entry in MODELS[:2]]


def test_models_list_and_retrieve_parse_strictly(client: anthropic.Anthropic) -> None:
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == IDS[:2]
    assert first.has_more and first.last_id == IDS[1]
    every = [m.id for m in islice(client.models.list(limit=2), 2 * len(IDS))]  # the SDK follows after_id
    assert every == IDS
    assert client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5-20251001"
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.models.retrieve("claude-nonexistent-1")
    assert missing.value.body["error"]["type"] == "not_found_error"
