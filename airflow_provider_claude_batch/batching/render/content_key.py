"""A request's content key: what identifies its answer, whoever asks and whenever.

The key is a 128-bit BLAKE2b digest of the request's ``params`` object exactly as it is sent
(the bytes after ``"params":`` in its request line), under a personalisation string that
names this key's version. ``params`` holds everything that changes the answer: the model,
``max_tokens``, the system prompt, the messages (few-shot turns, the row's prompt, the
prefill), sampling parameters (temperature, top_p,
top_k, stop sequences), ``output_config`` (the answer schema), tools and tool choice,
thinking, metadata. Two rows whose requests would be byte-for-byte the same get the same
key; anything that differs gives another.

What is **not** in it, and why:

* the ``custom_id``: it names a row of a run, not the question; the same question in another
  run (or twice in one) must find the same answer;
* the connection, its workspace or the API key: the model answers the same request the same
  way in any workspace of any organisation. A store is shared by everything that uses the same
  work directory; a team that must not share answers keeps a work directory of its own;
* the time: how old an answer may be is the store's retention (``answer_max_age``), decided
  at lookup, not part of the identity.

The key is deliberately literal. A change that cannot alter the answer but changes the bytes
(another order of ``params`` keys, turning prompt caching on, whose ``cache_control`` marks
are part of ``system``) gives a new key: such a change costs one run at full price, never a
wrong answer. A model alias (``claude-sonnet-4-6``) is keyed as written; an alias that moves
to a newer model is caught by the retention window, not by the key.

The renderer writes every line as ``{"custom_id":"<id>","params":{...}}`` with an id of
``[A-Za-z0-9_-]`` only, so the params start at a known offset; any other line is parsed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec
import numpy as np
import pyarrow as pa

#: Bytes per key (BLAKE2b-128: collisions are not a practical concern at any store size).
KEY_BYTES = 16
#: Changing this string retires every stored answer (for a change of what the key covers).
KEY_VERSION = b"claude-answer-1"
#: The key column's Arrow type.
KEY_TYPE = pa.binary(KEY_BYTES)

_PREFIX = b'{"custom_id":"'
_PARAMS = b'","params":'


class _Line(msgspec.Struct):
    params: msgspec.Raw


_decode_line = msgspec.json.Decoder(_Line).decode


def params_bytes(line: bytes) -> bytes | memoryview:
    """The ``params`` object of a request line, as the line holds it (a view into the line on
    the common path: a line with documents is megabytes, and a slice would copy it)."""
    end = len(line) - 1 if line.endswith(b"\n") else len(line)
    if line.startswith(_PREFIX):
        start = line.find(_PARAMS, len(_PREFIX), end)
        if start > 0 and line[end - 1 : end] == b"}":
            return memoryview(line)[start + len(_PARAMS) : end - 1]
    return bytes(_decode_line(line[:end]).params)


def content_key(line: bytes) -> bytes:
    """The content key of one request line (see the module docstring)."""
    return hashlib.blake2b(params_bytes(line), digest_size=KEY_BYTES, person=KEY_VERSION).digest()


def content_keys(lines: Iterable[bytes]) -> np.ndarray:
    """The keys of many request lines, as an ``(n, KEY_BYTES)`` array of bytes."""
    blake2b = hashlib.blake2b
    joined = b"".join(blake2b(params_bytes(line), digest_size=KEY_BYTES, person=KEY_VERSION).digest() for line in lines)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, KEY_BYTES)


def keys_of_column(lines: pa.Array) -> np.ndarray:
    """:func:`content_keys` of an Arrow column of request lines (binary or string)."""
    return content_keys(lines.cast(pa.binary()).to_pylist())


def as_arrow(keys: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Keys as an Arrow column (no copy of the bytes)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(KEY_TYPE, len(keys), [None, pa.py_buffer(keys)])


def as_numpy(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow key column as an ``(n, KEY_BYTES)`` array (nulls are not allowed)."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks() if keys.num_chunks != 1 else keys.chunk(0)
    if keys.null_count:
        raise ValueError("a key column holds nulls")
    data = np.frombuffer(keys.buffers()[1], dtype=np.uint8)
    start = keys.offset * KEY_BYTES
    return data[start : start + len(keys) * KEY_BYTES].reshape(-1, KEY_BYTES)


def partition_of(keys: np.ndarray) -> np.ndarray:
    """The answer-store partition (0-15, the first hex digit) of each key."""
    return (keys[:, 0] >> 4).astype(np.int8) if len(keys) else np.zeros(0, dtype=np.int8)
