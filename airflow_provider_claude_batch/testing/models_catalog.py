"""The emulator's ``/v1/models`` catalogue, in the API's shape (``ModelInfo``, newest first).

Clients call it to test a connection (the public Anthropic provider's *Test* button lists
models) or to check a model id; the emulator answers from this fixed list. Ids are the
models the provider's price table knows, so a DAG tested on the emulator uses real names.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_claude_batch.testing.pagination import cursor_page, list_body

#: ``(id, display_name, released)``, newest first, as ``GET /v1/models`` orders them.
MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
)

#: Short names the API also accepts for ``GET /v1/models/{id}`` (they resolve to the dated id).
ALIASES = {model_id.rsplit("-", 1)[0]: model_id for model_id, _, _ in MODELS if model_id[-8:].isdigit()}


def model_info(model_id: str, display_name: str, released: str) -> dict[str, Any]:
    line = next((name for name in ("opus", "sonnet", "haiku") if f"-{name}-" in model_id), None)
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": released,
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": line,
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


def find_model(model_id: str) -> dict[str, Any] | None:
    """The ``ModelInfo`` of an id or alias, ``None`` when the catalogue has no such model."""
    wanted = ALIASES.get(model_id, model_id)
    for entry in MODELS:
        if entry[0] == wanted:
            return model_info(*entry)
    return None


def models_page(limit: int, after_id: str | None, before_id: str | None) -> dict[str, Any]:
    """One page of the catalogue with the API's cursor fields (the same rules as batch lists)."""
    page, has_more = cursor_page(MODELS, _model_id, limit, after_id, before_id)
    return list_body(page, _model_id, has_more, lambda entry: model_info(*entry))


def _model_id(entry: tuple[str, str, str]) -> str:
    return entry[0]
