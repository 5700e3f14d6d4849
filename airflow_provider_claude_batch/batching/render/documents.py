"""Documents and images in a request: which columns become ``document`` or ``image`` blocks,
in which order with the prompt's text, and each block's JSON made from the file's bytes.

The common case is one line: ``documents=["path"]`` (or ``images=[...]``) puts a block per
named column before the prompt's text; :class:`DocumentBlock` and :class:`ImageBlock` add a
title, a context and citations, and a ``content`` list with :data:`PROMPT` in it sets the order.

Invariants:

* A column's value is a path or URI (text) read through the storage layer, or the bytes
  themselves; the block is built from the **bytes**, whatever the file is called: its media
  type is sniffed (:mod:`batching.api.media`), never taken from the extension, and nothing of
  the path goes into the request (so the content key, a hash of the request, covers the bytes
  and not the name: the same scan under another name reuses its answer).
* Everything the API would refuse is refused here, before anything is sent, naming the row,
  its custom_id, the column and the file: a missing or unreadable file, an empty one, an
  unsupported or mismatched type (a PDF column holding a PNG), an encrypted or corrupt PDF,
  page, pixel and size limits, and the limits of a request's blocks together.
* Memory: one file at a time is read, encoded and dropped (:meth:`ContentRenderer.blocks`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from airflow_provider_claude_batch.batching.api import limits, media
from airflow_provider_claude_batch.batching.state.storage import as_path, is_local, local_os_path
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: Where the prompt's text goes in a ``content`` list (without it: after every block).
PROMPT = "{prompt}"

_encode = msgspec.json.Encoder().encode

#: A base64 source as :meth:`ContentRenderer._block_json` writes it. Its raw quotes cannot occur
#: inside a JSON string (they would be escaped there), so in a request line it is always a source.
_INLINE_SOURCE = re.compile(rb'\{"type":"base64","media_type":"([a-z/+.-]+)","data":"([A-Za-z0-9+/=]*)"\}')


def inline_sources(body: bytes) -> Iterator[re.Match[bytes]]:
    """The base64 sources of the request lines in ``body``, in order: group 1 the media type,
    group 2 the base64 data; the match spans the source object, which a file reference
    (:func:`file_source`) may replace."""
    return _INLINE_SOURCE.finditer(body)


def file_source(file_id: str) -> bytes:
    """A source by reference to a file uploaded through the Files API."""
    return b'{"type":"file","file_id":' + _encode(file_id) + b"}"


@dataclass(frozen=True)
class DocumentBlock:
    """A ``document`` block from a column of paths, URIs or bytes (a PDF or plain text).

    :param title: the document's title, as the API shows it to the model and in citations.
    :param context: text about the document that is not part of it (not cited).
    :param citations: ask for citations of this document (not with an ``output_schema``).
    """

    column: str
    title: str | None = None
    context: str | None = None
    citations: bool = False

    kind = "document"


@dataclass(frozen=True)
class ImageBlock:
    """An ``image`` block from a column of paths, URIs or bytes (JPEG, PNG, GIF, WebP)."""

    column: str

    kind = "image"


Block = DocumentBlock | ImageBlock


def content_spec(
    documents: Sequence[str | DocumentBlock] | None = None,
    images: Sequence[str | ImageBlock] | None = None,
    content: Sequence[str | Block] | None = None,
) -> tuple[str | Block, ...]:
    """The request's content in order: blocks and :data:`PROMPT` once. ``documents`` and
    ``images`` are the one-line form (blocks before the text); ``content`` sets the order."""
    if content is not None and (documents or images):
        raise ClaudeBatchInputError("give the request's blocks either as content= or as documents=/images=, not both")
    if content is None:
        items: list[str | Block] = [d if isinstance(d, DocumentBlock) else DocumentBlock(d) for d in documents or ()]
        items += [i if isinstance(i, ImageBlock) else ImageBlock(i) for i in images or ()]
        if not items:
            return ()
        items.append(PROMPT)
    else:
        items = list(content)
    for item in items:
        if isinstance(item, str) and item != PROMPT:
            raise ClaudeBatchInputError(
                f"content holds {item!r}: use DocumentBlock(column), ImageBlock(column) or PROMPT ({PROMPT!r})"
            )
        if not isinstance(item, (str, DocumentBlock, ImageBlock)):
            raise ClaudeBatchInputError(
                f"content holds a {type(item).__name__}: use DocumentBlock, ImageBlock or PROMPT"
            )
    if items.count(PROMPT) > 1:
        raise ClaudeBatchInputError("content names PROMPT more than once")
    if PROMPT not in items:
        items.append(PROMPT)
    return tuple(items)


def describe(content: Sequence[str | Block]) -> list[Any]:
    """The content as plain data, for the run's fingerprint."""
    return [item if isinstance(item, str) else {"kind": item.kind, **item.__dict__} for item in content]


def read_bytes(value: Any, where: str) -> tuple[bytes, str]:
    """The bytes a column value stands for and how to name it: a path or URI is read (local
    files with the OS, others through the storage layer), bytes are themselves."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), "bytes in the column"
    if not isinstance(value, str) or not value.strip():
        raise ClaudeBatchInputError(f"{where}: holds {value!r}, neither a path nor bytes")
    try:
        path = as_path(value)
        if is_local(path):
            with open(local_os_path(path), "rb") as handle:
                return handle.read(), f"file {value}"
        with path.open("rb") as handle:
            return handle.read(), f"file {value}"
    except FileNotFoundError:
        raise ClaudeBatchInputError(f"{where}: file {value} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ClaudeBatchInputError(f"{where}: file {value} cannot be read: {type(exc).__name__}: {exc}") from None


@dataclass
class RenderedBlocks:
    """A row's blocks: the JSON of each, in content order, with what they cost."""

    json: list[bytes]
    facts: list[media.MediaFacts]
    #: Characters of base64 or text data in the blocks (not prompt text: see ``tokens``).
    data_chars: int
    #: Estimated input tokens of the blocks (``MediaFacts.tokens``).
    tokens: int


class ContentRenderer:
    """Builds each row's blocks from its columns' values, one file in memory at a time."""

    def __init__(self, content: Sequence[str | Block]) -> None:
        self.content = tuple(content)
        self.blocks_spec = [item for item in self.content if not isinstance(item, str)]
        self.citations = any(isinstance(item, DocumentBlock) and item.citations for item in self.blocks_spec)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(block.column for block in self.blocks_spec))

    def blocks(self, values: Sequence[Any], where: str) -> RenderedBlocks:
        """The blocks of one row; ``values`` are its values of :attr:`blocks_spec`' columns in
        order; ``where`` names the row (and custom_id) in errors."""
        rendered = RenderedBlocks([], [], 0, 0)
        for block, value in zip(self.blocks_spec, values, strict=True):
            place = f"{where}, column {block.column!r}"
            if value is None:
                raise ClaudeBatchInputError(f"{place} is null; the request's {block.kind} needs it")
            data, label = read_bytes(value, place)
            try:
                facts = media.inspect(data, digest=False)
            except media.ClaudeBatchMediaError as exc:
                raise ClaudeBatchInputError(f"{place}, {label}: {exc}") from None
            allowed = limits.IMAGE_MEDIA_TYPES if block.kind == "image" else limits.DOCUMENT_MEDIA_TYPES
            if facts.media_type not in allowed:
                raise ClaudeBatchInputError(
                    f"{place}, {label}: it is {facts.media_type}, which {'an' if block.kind == 'image' else 'a'} {block.kind} block cannot hold "
                    f"(it takes {', '.join(allowed)})"
                )
            encoded = self._block_json(block, data, facts)
            rendered.json.append(encoded)
            rendered.facts.append(facts)
            rendered.data_chars += media.base64_size(len(data)) if facts.media_type != "text/plain" else len(data)
            rendered.tokens += facts.tokens()
            del data
        problem = media.check_request(rendered.facts)
        if problem is not None:
            raise ClaudeBatchInputError(f"{where}: {problem}")
        return rendered

    @staticmethod
    def _block_json(block: Block, data: bytes, facts: media.MediaFacts) -> bytes:
        kind = block.kind.encode()
        if facts.media_type == "text/plain":
            parts = [b'{"type":"', kind, b'","source":{"type":"text","media_type":"text/plain","data":']
            parts += [_encode(data.decode("utf-8")), b"}"]
        else:
            parts = [b'{"type":"', kind, b'","source":{"type":"base64","media_type":"', facts.media_type.encode()]
            parts += [b'","data":"', base64.b64encode(data), b'"}']
        if isinstance(block, DocumentBlock):
            if block.title is not None:
                parts += [b',"title":', _encode(block.title)]
            if block.context is not None:
                parts += [b',"context":', _encode(block.context)]
            if block.citations:
                parts.append(b',"citations":{"enabled":true}')
        parts.append(b"}")
        return b"".join(parts)  # one copy of the base64, however many parts

    def message_content(self, rendered: RenderedBlocks, prompt: str) -> bytes:
        """The user turn's ``content`` list: the blocks and the prompt's text in order."""
        return b"".join(self.message_content_parts(rendered, prompt))

    def message_content_parts(self, rendered: RenderedBlocks, prompt: str) -> list[bytes]:
        """:meth:`message_content` as the parts it joins: a caller that builds a longer line
        joins them once with the rest (each join of a block copies its base64 once more)."""
        parts: list[bytes] = [b"["]
        blocks = iter(rendered.json)
        for index, item in enumerate(self.content):
            if index:
                parts.append(b",")
            if isinstance(item, str):
                parts += [b'{"type":"text","text":', _encode(prompt), b"}"]
            else:
                parts.append(next(blocks))
        parts.append(b"]")
        return parts
