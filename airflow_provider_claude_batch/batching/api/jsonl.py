"""Byte streams -> JSONL lines, cut once.

Request files, saved results and the results download are all JSONL: one JSON object a line,
LF only. JSON text never holds a raw newline, so a newline byte is always a line end and a
stream can be cut at any newline without decoding it. Everything that turns bytes into lines
goes through :func:`line_blocks`, which reads in large blocks (far fewer calls than line
iteration on remote file systems) and never holds more than one block plus one partial line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

#: Bytes per read from a file handle.
DEFAULT_BLOCK_BYTES = 1 << 22


def read_blocks(handle: Any, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[bytes]:
    """The bytes of a binary file handle, ``block_bytes`` at a time."""
    while block := handle.read(block_bytes):
        yield block


def line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines of a byte stream cut anywhere, a block of them at a time.

    Each block ends where a line ends (that newline dropped), so ``block.split(b"\\n")`` gives
    its lines. A last line without a newline is yielded unless it is blank.
    """
    pending = b""
    for data in chunks:
        if not data:
            continue
        data = pending + data if pending else data
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        yield data[:cut]
        pending = data[cut + 1 :]
    if pending.strip():
        yield pending


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty lines of a byte stream cut anywhere, each without its newline."""
    for block in line_blocks(chunks):
        yield from filter(None, block.split(b"\n"))


def iter_file_lines(handle: Any, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[bytes]:
    """The non-empty lines of a binary file handle, each without its newline."""
    return iter_lines(read_blocks(handle, block_bytes))
