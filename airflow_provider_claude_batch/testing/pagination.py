"""Cursor pagination as the API's list endpoints do it (``limit``, ``after_id``, ``before_id``).

Items are in the API's order (newest first). ``after_id`` pages towards older items,
``before_id`` towards newer ones; an unknown cursor yields an empty page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def cursor_page(
    items: Sequence[T], key: Callable[[T], str], limit: int, after_id: str | None, before_id: str | None
) -> tuple[Sequence[T], bool]:
    """The page of ``items`` the cursors select, and whether more lie beyond it."""
    ids = [key(item) for item in items]
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(ids)
        return items[start : start + limit], start + limit < len(ids)
    if before_id is not None:
        stop = ids.index(before_id) if before_id in ids else 0
        return items[max(0, stop - limit) : stop], stop - limit > 0
    return items[:limit], limit < len(ids)


def list_body(page: Sequence[T], key: Callable[[T], str], has_more: bool, render: Callable[[T], Any]) -> dict[str, Any]:
    """The API's list envelope: ``data``, ``has_more``, ``first_id``, ``last_id``."""
    return {
        "data": [render(item) for item in page],
        "has_more": has_more,
        "first_id": key(page[0]) if page else None,
        "last_id": key(page[-1]) if page else None,
    }
