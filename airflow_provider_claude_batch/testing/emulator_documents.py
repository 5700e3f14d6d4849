"""The ``image`` and ``document`` blocks of a request, as the emulator checks and counts them.

Invariants:

* Checked as the API does, and reported as the API does: per request, at processing time (an
  errored result with an ``invalid_request_error`` naming the block), never by refusing the
  create. A block's base64 must decode, its declared media type must be one of its kind's and
  match the bytes (:func:`media.sniff`), and the limits of :mod:`batching.api.limits` hold
  (image bytes and sides, images per request, PDF pages and bytes per request); an encrypted or
  corrupt PDF is refused.
* A ``file`` source is resolved in the request's workspace: an unknown id, or another
  workspace's, fails that request with the API's "File not found".
* Tokens: the base64 or text of a block is not counted as prompt characters; each block adds
  its estimate (:meth:`media.MediaFacts.tokens`), so usage reflects pages and pixels.
* The answer carries the facts of every document it received, in order (sha256, media type,
  size, pages or dimensions; :data:`DocumentFacts`), so a test proves that each row was
  answered about its own document; a document with citations enabled gets a citation of its
  first text line (a ``page_location`` for a PDF, a ``char_location`` for text).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from airflow_provider_claude_batch.batching.api import limits, media

#: The facts of one block the emulator received (``MediaFacts.as_dict`` plus ``kind``,
#: ``title``, ``citations`` and ``first_line``).
DocumentFacts = dict[str, Any]
#: Resolves a ``file_id`` in a workspace to its bytes (``None``: no such file there).
FileResolver = Callable[[str, "str | None"], "bytes | None"]

_TEXT_SHOW = re.compile(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj")


class BlockError(ValueError):
    """A block the API would refuse: the request ends errored with this message."""


def read_blocks(
    messages: Any, workspace: str | None, resolve: FileResolver | None
) -> tuple[list[DocumentFacts], int, int]:
    """The facts of every image and document block of ``messages``, their estimated tokens, and
    the characters of their data (left out of the prompt's text count); :class:`BlockError`
    for the first block the API would refuse."""
    documents: list[DocumentFacts] = []
    tokens = data_chars = 0
    all_facts: list[media.MediaFacts] = []
    for m, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for b, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict) or block.get("type") not in ("image", "document"):
                continue
            where = f"messages.{m}.content.{b}"
            facts, chars = _block_facts(block, where, workspace, resolve)
            all_facts.append(facts)
            tokens += facts.tokens()
            data_chars += chars
            documents.append(_described(block, facts, chars))
    problem = media.check_request(all_facts)
    if problem is not None:
        raise BlockError(problem)
    return documents, tokens, data_chars


def _block_facts(
    block: dict[str, Any], where: str, workspace: str | None, resolve: FileResolver | None
) -> tuple[media.MediaFacts, int]:
    kind = block["type"]
    source = block.get("source")
    if not isinstance(source, dict):
        raise BlockError(f"{where}.source: Field required")
    allowed = limits.IMAGE_MEDIA_TYPES if kind == "image" else limits.DOCUMENT_MEDIA_TYPES
    source_type = source.get("type")
    if source_type == "base64":
        declared, data = source.get("media_type"), source.get("data")
        if declared not in allowed or (kind == "document" and declared != "application/pdf"):
            raise BlockError(f"{where}.source.media_type: Input should be one of {', '.join(allowed)}")
        if not isinstance(data, str) or not data:
            raise BlockError(f"{where}.source.data: Field required")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BlockError(f"{where}.source.data: invalid base64 data") from None
        return _checked(raw, declared, kind, where), len(data)
    if source_type == "text" and kind == "document":
        data = source.get("data")
        if source.get("media_type") != "text/plain" or not isinstance(data, str):
            raise BlockError(f"{where}.source: a text source needs media_type text/plain and data")
        raw = data.encode("utf-8")
        return _checked(raw, "text/plain", kind, where), len(data)
    if source_type == "file":
        file_id = source.get("file_id")
        raw_file = resolve(str(file_id), workspace) if resolve is not None and isinstance(file_id, str) else None
        if raw_file is None:
            raise BlockError(f"{where}.source.file_id: File not found: {file_id}")
        return _checked(raw_file, None, kind, where), 0
    raise BlockError(
        f"{where}.source.type: Input should be 'base64', 'file'" + (", 'text'" if kind == "document" else "")
    )


def _checked(raw: bytes, declared: str | None, kind: str, where: str) -> media.MediaFacts:
    try:
        facts = media.inspect(raw)
    except media.ClaudeBatchMediaError as exc:
        raise BlockError(f"{where}: {exc}") from None
    allowed = limits.IMAGE_MEDIA_TYPES if kind == "image" else limits.DOCUMENT_MEDIA_TYPES
    if facts.media_type not in allowed:
        raise BlockError(f"{where}: a {kind} block cannot hold {facts.media_type} data")
    if declared is not None and declared != facts.media_type:
        raise BlockError(
            f"{where}.source: The {kind} was specified using the {declared} media type, but it appears "
            f"to be a {facts.media_type} {kind}"
        )
    return facts


def _described(block: dict[str, Any], facts: media.MediaFacts, chars: int) -> DocumentFacts:
    citations = block.get("citations")
    described: DocumentFacts = {"kind": block["type"], **facts.as_dict()}
    if block.get("title") is not None:
        described["title"] = block["title"]
    if isinstance(citations, dict) and citations.get("enabled"):
        described["citations"] = True
        described["first_line"] = _first_line(block, facts)
    return described


def _first_line(block: dict[str, Any], facts: media.MediaFacts) -> str:
    """The first text line of a document (for its citation): a PDF's first shown string, a
    text document's first line."""
    source = block["source"]
    if facts.media_type == "text/plain" and source.get("type") == "text":
        return str(source["data"]).splitlines()[0] if source["data"] else ""
    if facts.media_type == "application/pdf" and source.get("type") == "base64":
        found = _TEXT_SHOW.search(base64.b64decode(source["data"]))
        if found:
            return re.sub(rb"\\(.)", rb"\1", found.group(1)).decode("latin-1")
    return ""


def citation_of(index: int, document: DocumentFacts) -> dict[str, Any]:
    """The citation the emulator's answer makes of document ``index``: its first line, on its
    first page (PDF) or at its first characters (text)."""
    text = str(document.get("first_line", ""))
    title = document.get("title")
    if document["media_type"] == "application/pdf":
        return {
            "type": "page_location",
            "cited_text": text,
            "document_index": index,
            "document_title": title,
            "start_page_number": 1,
            "end_page_number": 2,
        }
    return {
        "type": "char_location",
        "cited_text": text,
        "document_index": index,
        "document_title": title,
        "start_char_index": 0,
        "end_char_index": len(text),
    }
