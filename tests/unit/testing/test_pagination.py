"""Cursor pagination of the emulator's list endpoints.

Invariants (items newest first, as the API orders them):

* no cursor: the first ``limit`` items; ``has_more`` says whether any lie beyond.
* ``after_id=X``: the ``limit`` items just after X (older); walking ``after_id=last_id``
  visits every item once, in order, and stops where ``has_more`` turns false.
* ``before_id=X``: the ``limit`` items just before X (newer), in the same newest-first order;
  walking ``before_id=first_id`` reaches the newest item.
* an unknown cursor gives an empty page without more; the envelope's ``first_id``/``last_id``
  are the page's ends, ``None`` for an empty page.
"""

from __future__ import annotations

from itertools import islice

import anthropic
import pytest

from airflow_provider_claude_batch.testing.models_catalog import MODELS
from airflow_provider_claude_batch.testing.pagination import cursor_page, list_body

ITEMS = [f"item_{n}" for n in range(7)]


def _same(item: str) -> str:
    return item


def _page(limit: int, after_id: str | None = None, before_id: str | None = None) -> tuple[list[str], bool]:
    page, has_more = cursor_page(ITEMS, _same, limit, after_id, before_id)
    return list(page), has_more


def test_without_a_cursor_the_first_page_and_whether_more_lie_beyond() -> None:
    assert _page(3) == (ITEMS[:3], True)
    assert _page(6) == (ITEMS[:6], True)
    assert _page(7) == (ITEMS, False)
    assert _page(1000) == (ITEMS, False)


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 20])
def test_walking_after_id_visits_every_item_once_in_order(limit: int) -> None:
    seen, has_more = _page(limit)
    pages = 1
    while has_more and pages <= len(ITEMS):  # bounded: a cursor that does not advance fails, not hangs
        page, has_more = _page(limit, after_id=seen[-1])
        assert page, "has_more promised a page that is empty"
        seen += page
        pages += 1
    assert seen == ITEMS
    assert pages == -(-len(ITEMS) // limit)


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 20])
def test_walking_before_id_reaches_the_newest_item(limit: int) -> None:
    seen, has_more = _page(limit, before_id=ITEMS[-1])
    assert seen == ITEMS[max(0, 6 - limit) : 6]
    for _ in range(len(ITEMS)):
        if not has_more:
            break
        page, has_more = _page(limit, before_id=seen[0])
        assert page, "has_more promised a page that is empty"
        seen = page + seen
    assert seen == ITEMS[:-1]


def test_before_id_pages_end_just_before_the_cursor() -> None:
    assert _page(2, before_id="item_4") == (["item_2", "item_3"], True)
    assert _page(2, before_id="item_2") == (["item_0", "item_1"], False)
    assert _page(5, before_id="item_2") == (["item_0", "item_1"], False)
    assert _page(2, before_id="item_0") == ([], False)


def test_after_id_pages_start_just_after_the_cursor() -> None:
    assert _page(2, after_id="item_2") == (["item_3", "item_4"], True)
    assert _page(2, after_id="item_4") == (["item_5", "item_6"], False)
    assert _page(2, after_id="item_6") == ([], False)


@pytest.mark.parametrize("cursor", ["after_id", "before_id"])
def test_an_unknown_cursor_is_an_empty_page_without_more(cursor: str) -> None:
    assert _page(3, **{cursor: "item_gone"}) == ([], False)


def test_list_body_names_the_pages_ends_and_renders_each_item() -> None:
    body = list_body(ITEMS[2:4], _same, True, str.upper)
    assert body == {"data": ["ITEM_2", "ITEM_3"], "has_more": True, "first_id": "item_2", "last_id": "item_3"}
    assert list_body([], _same, False, str.upper) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_the_sdk_pages_backwards_with_before_id_to_the_newest(client: anthropic.Anthropic) -> None:
    """Over HTTP (the models list uses these rules): the SDK follows ``first_id`` as the next
    ``before_id`` while ``has_more`` holds, so a wrong ``has_more`` loses or repeats models."""
    ids = [model_id for model_id, _, _ in MODELS]
    newer = [m.id for m in islice(client.models.list(limit=2, before_id=ids[-1]), 2 * len(ids))]
    assert sorted(newer) == sorted(ids[:-1]) and len(newer) == len(set(newer))
    first = client.models.list(limit=2, before_id=ids[-1])
    assert [m.id for m in first.data] == ids[-3:-1]
    assert (first.first_id, first.last_id, first.has_more) == (ids[-3], ids[-2], True)
