"""The type and range of every Messages parameter, checked before a request is written.

The API validates parameters per request and reports a bad one as an ``errored`` result,
after the batch was created; some bad values (``model=123``) break the run's own code
first. So every parameter a run sets (``model``, ``max_tokens``, ``request_params`` and
each row's ``params_column``) is checked here, before anything is written or submitted,
and an error names where the value came from and the field.

The reference is the installed SDK's ``MessageCreateParams``: its keys are the parameters
a request may carry (so a newer SDK extends the list by itself), plus the sampling
parameters older models accept. Values are checked by type and range where the API
documents one; the structure inside ``tools``, ``thinking`` and the like is left to the API.

``messages`` is the renderer's: a row's prompt is always the last user turn. Before it may
come few-shot turns (:func:`check_turns`: user and assistant in turn, from a user turn to an
assistant turn) and after it an assistant prefill (:func:`check_prefill`), which the API does
not take with native structured outputs (``output_config.format``) nor with extended
thinking (:func:`check_prefill_allowed`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: Sampling parameters accepted by the API for the models that support them, though the SDK's
#: typed parameters no longer list them.
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


@functools.cache
def known_params() -> frozenset[str]:
    """Every parameter a request may carry. Read from the SDK when first needed (a request is
    checked), not on import: the operators import this module when a DAG file is parsed, and
    the turns and prefill checks they run there need no SDK."""
    from anthropic.types.message_create_params import MessageCreateParamsBase

    return frozenset(MessageCreateParamsBase.__annotations__) | frozenset(SAMPLING_PARAMS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "a string"


def _non_empty_str(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 else "a positive integer"


def _unit_number(value: Any) -> str | None:
    return None if _is_number(value) and 0 <= value <= 1 else "a number between 0 and 1"


def _top_k(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "a non-negative integer"


def _stop_sequences(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(s, str) and s.strip() for s in value)
    return None if ok else "a list of non-empty strings"


def _metadata(value: Any) -> str | None:
    from anthropic.types.metadata_param import MetadataParam

    allowed = set(MetadataParam.__annotations__)
    ok = isinstance(value, Mapping) and set(value) <= allowed and all(_str_or_none(v) is None for v in value.values())
    return None if ok else f"an object with only {sorted(allowed)} (strings)"


def _system(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    ok = isinstance(value, list) and all(
        isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str)
        for block in value
    )
    return None if ok else 'a string or a list of {"type": "text", "text": ...} blocks'


def _objects(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(item, Mapping) for item in value)
    return None if ok else "a list of objects"


def _typed_object(value: Any) -> str | None:
    ok = isinstance(value, Mapping) and isinstance(value.get("type"), str)
    return None if ok else 'an object with a "type"'


def _object_or_none(value: Any) -> str | None:
    return None if value is None or isinstance(value, Mapping) else "an object"


def _one_of(*choices: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"one of {list(choices)}"

    return check


#: parameter -> check returning what the value must be, or None when it is fine.
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "model": _non_empty_str,
    "max_tokens": _positive_int,
    "temperature": _unit_number,
    "top_p": _unit_number,
    "top_k": _top_k,
    "stop_sequences": _stop_sequences,
    "metadata": _metadata,
    "system": _system,
    "tools": _objects,
    "tool_choice": _typed_object,
    "thinking": _typed_object,
    "service_tier": _one_of("auto", "standard_only"),
    "speed": _one_of(None, "standard", "fast"),
    "output_config": _object_or_none,
    "cache_control": _object_or_none,
    "diagnostics": _object_or_none,
    "inference_geo": _str_or_none,
    "user_profile_id": _str_or_none,
    "workspace_id": _str_or_none,
    "container": lambda v: None if v is None or isinstance(v, (str, Mapping)) else "a string or an object",
}


def check_params(params: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`ClaudeBatchInputError` naming ``where`` and the field for the first
    parameter the API would refuse by name, type or range (``messages`` is the renderer's)."""
    for name, value in params.items():
        if name == "messages":
            continue
        if name not in known_params():
            raise ClaudeBatchInputError(
                f"{where}: {name!r} is not a Messages API parameter; known ones are {sorted(known_params())}"
            )
        check = _CHECKS.get(name)
        expected = check(value) if check is not None else None
        if expected is not None:
            raise ClaudeBatchInputError(f"{where}: {name} must be {expected}, got {value!r}")


#: The roles of a turn before the row's prompt.
ROLES = ("user", "assistant")


def _content(value: Any) -> str | None:
    """What a turn's ``content`` must be, or None when it is fine: text that is not blank, or
    content blocks (objects with a ``type``; what is inside them is left to the API)."""
    if isinstance(value, str):
        return None if value.strip() else "text that is not blank"
    ok = (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(block, Mapping) and isinstance(block.get("type"), str) for block in value)
    )
    return None if ok else 'text, or a non-empty list of content blocks (objects with a "type")'


def check_turns(value: Any, *, where: str) -> list[dict[str, Any]]:
    """Few-shot turns to put before a row's prompt, as ``{"role", "content"}`` objects in
    that key order (the bytes a request is keyed by). Raise :class:`ClaudeBatchInputError`
    naming ``where`` and the turn unless they are a list of objects with exactly ``role`` and
    ``content``, the roles alternating from ``user`` to ``assistant`` (the row's prompt is
    the next user turn). An empty list is no turns."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise ClaudeBatchInputError(
            f"{where}: messages must be a list of turns ({{'role': 'user' or 'assistant', 'content': ...}}), "
            f"got {type(value).__name__}"
        )
    turns: list[dict[str, Any]] = []
    for index, turn in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(turn, Mapping):
            raise ClaudeBatchInputError(f"{where}: {field} must be an object with role and content, got {turn!r}")
        extra = sorted(set(turn) - {"role", "content"})
        if extra or "role" not in turn or "content" not in turn:
            raise ClaudeBatchInputError(
                f"{where}: {field} must have exactly the keys role and content, got {sorted(turn)}"
            )
        expected_role = ROLES[index % 2]
        if turn["role"] != expected_role:
            raise ClaudeBatchInputError(
                f"{where}: {field}.role must be {expected_role!r} (turns alternate, from a user turn to an "
                f"assistant turn, before the row's prompt), got {turn['role']!r}"
            )
        expected = _content(turn["content"])
        if expected is not None:
            raise ClaudeBatchInputError(f"{where}: {field}.content must be {expected}, got {turn['content']!r}")
        content = turn["content"]
        turns.append({"role": turn["role"], "content": list(content) if isinstance(content, tuple) else content})
    if turns and turns[-1]["role"] != "assistant":
        raise ClaudeBatchInputError(
            f"{where}: messages must end with an assistant turn (the row's prompt is the next user turn); "
            f"messages[{len(turns) - 1}] is a user turn"
        )
    return turns


def check_prefill(value: Any, *, where: str) -> str | None:
    """The start of the answer (an assistant turn after the row's prompt), or None for none
    (None or an empty string). Raise :class:`ClaudeBatchInputError` naming ``where`` unless it
    is text that does not end in whitespace (the API refuses a final assistant turn that does)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClaudeBatchInputError(f"{where}: prefill must be a string, got {type(value).__name__} {value!r}")
    if value != value.rstrip():
        raise ClaudeBatchInputError(
            f"{where}: prefill must not end in whitespace (the API refuses such a final assistant turn), got {value!r}"
        )
    return value


def check_prefill_allowed(params: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`ClaudeBatchInputError` naming ``where`` when ``params`` (a request's, with
    a prefill) ask for what the API does not take with a prefilled answer: native structured
    outputs (``output_config.format``, from ``output_schema``) or extended thinking."""
    config = params.get("output_config")
    if isinstance(config, Mapping) and config.get("format") is not None:
        raise ClaudeBatchInputError(
            f"{where}: a prefill cannot be combined with output_schema (or output_config.format): the API's "
            "structured outputs do not take a prefilled answer. Drop the prefill; the schema already fixes how "
            "the answer starts"
        )
    thinking = params.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled"):
        raise ClaudeBatchInputError(
            f"{where}: a prefill cannot be combined with thinking ({thinking.get('type')!r}): the API does not take "
            "a prefilled answer with extended thinking"
        )
