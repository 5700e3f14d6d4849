"""What a document or image is, read from its bytes: media type, pages, dimensions, token
estimates, and whether the Messages API takes it (alone and together in one request).

Invariants:

* The media type comes from the bytes (magic numbers), never from a file name or a declared
  type: a ``.pdf`` that holds a PNG is a PNG, and a file that is none of the supported types is
  refused, naming what it looks like.
* Nothing here reads a file or decodes base64: callers pass the bytes, so the provider (before
  sending) and the emulator (on receipt) apply the same rules to the same bytes.
* Token figures are **estimates** (the API counts its own): an image costs about
  ``width * height / 750`` tokens after the API's downscaling (long edge at most
  ``IMAGE_RESIZE_EDGE`` pixels, at most ``IMAGE_RESIZE_PIXELS`` pixels); a PDF page costs its
  text and an image of the page, counted here as ``PDF_TOKENS_PER_PAGE`` (the top of the
  published 1,500-3,000 range, so that a cost ceiling errs high); plain text a quarter of its
  characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.exceptions import ClaudeBatchMediaError

#: The API scales an image down until its long edge and its pixel count fit these.
IMAGE_RESIZE_EDGE = 1568
IMAGE_RESIZE_PIXELS = 1_150_000
#: Pixels per token of an image (the published approximation).
PIXELS_PER_TOKEN = 750
#: Estimated tokens of one PDF page (its text and its image; the published range's top).
PDF_TOKENS_PER_PAGE = 3000
#: Bytes enough to tell every supported type apart (and read an image's dimensions in most
#: files; JPEG may need more, see :func:`image_size`).
SNIFF_BYTES = 64

_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_PDF_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", re.S)
_PDF_OBJSTM = re.compile(rb"/Type\s*/ObjStm\b[^>]*>>\s*stream\r?\n", re.S)


@dataclass(frozen=True)
class MediaFacts:
    """What one document or image is: its sniffed media type, size, sha256, and for a PDF its
    pages, for an image its dimensions."""

    media_type: str
    size: int
    sha256: str
    pages: int | None = None
    width: int | None = None
    height: int | None = None

    @property
    def is_image(self) -> bool:
        return self.media_type in limits.IMAGE_MEDIA_TYPES

    def tokens(self) -> int:
        """Estimated input tokens (see the module docstring)."""
        if self.width is not None and self.height is not None:
            return image_tokens(self.width, self.height)
        if self.pages is not None:
            return self.pages * PDF_TOKENS_PER_PAGE
        return max(1, math.ceil(self.size / 4))

    def as_dict(self) -> dict[str, object]:
        facts: dict[str, object] = {"media_type": self.media_type, "size": self.size, "sha256": self.sha256}
        for name in ("pages", "width", "height"):
            if getattr(self, name) is not None:
                facts[name] = getattr(self, name)
        return facts


def sniff(head: bytes) -> str | None:
    """The media type the first bytes show (``None``: none the API takes). Plain text is what
    decodes as UTF-8 (a character cut at the end of ``head`` allowed) and holds no control
    character but tab, newline, carriage return and form feed."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head and not _CONTROL.search(head):
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:
                return None
        return "text/plain"
    return None


def describe_unknown(head: bytes) -> str:
    """Words for bytes :func:`sniff` does not take, for an error message."""
    known = {
        b"PK\x03\x04": "a ZIP archive (an Office document?)",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
    }
    for magic, what in known.items():
        if head.startswith(magic):
            return what
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "a HEIC image"
    return f"binary data starting {head[:8]!r}"


def image_size(data: bytes, media_type: str) -> tuple[int, int]:
    """(width, height) of an image, read from its header; :class:`ClaudeBatchMediaError` when it has none."""
    try:
        if media_type == "image/png" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if media_type == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if media_type == "image/webp":
            return _webp_size(data)
        if media_type == "image/jpeg":
            return _jpeg_size(data)
    except struct.error:
        pass
    raise ClaudeBatchMediaError(f"the {media_type} image is corrupt: its header does not give its dimensions")


def _webp_size(data: bytes) -> tuple[int, int]:
    kind = data[12:16]
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        b0, b1, b2, b3 = data[21:25]
        return 1 + (b0 | (b1 & 0x3F) << 8), 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
    if kind == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    raise struct.error("unknown WebP chunk")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            raise struct.error("not a marker")
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    raise struct.error("no frame header")


def pdf_pages(data: bytes) -> int:
    """A PDF's page count; :class:`ClaudeBatchMediaError` for one that is encrypted, cut short or has no
    pages. Counts ``/Type /Page`` objects, also inside compressed object streams, and falls back
    to the page tree's ``/Count``."""
    if not data.startswith(b"%PDF-"):
        raise ClaudeBatchMediaError("the PDF is corrupt: it does not start with %PDF-")
    if b"%%EOF" not in data[-1024:]:
        raise ClaudeBatchMediaError("the PDF is corrupt: it has no %%EOF at its end (cut short?)")
    # ``bytes.find`` (memchr speed) first: the regular expressions run only where it found something.
    if b"/Encrypt" in data and re.search(rb"/Encrypt\s*(\d+\s+\d+\s+R|<<)", data):
        raise ClaudeBatchMediaError("the PDF is encrypted: the API reads only PDFs without a password or encryption")
    pages = len(_PDF_PAGE.findall(data))
    for match in _PDF_OBJSTM.finditer(data) if b"/ObjStm" in data else ():
        end = data.find(b"endstream", match.end())
        try:
            pages += len(_PDF_PAGE.findall(zlib.decompress(data[match.end() : end].rstrip(b"\r\n"))))
        except zlib.error:
            continue
    if not pages:
        counts = [int(a or b) for a, b in _PDF_COUNT.findall(data)]
        pages = max(counts, default=0)
    if not pages:
        raise ClaudeBatchMediaError("the PDF is corrupt: no page found in it")
    return pages


def inspect(data: bytes, *, digest: bool = True) -> MediaFacts:
    """The facts of one document or image, or :class:`ClaudeBatchMediaError` saying why the API would not
    take it (an unsupported type, an empty file, a corrupt PDF or image, a size limit).
    ``digest=False`` leaves ``sha256`` empty (the renderer's content key hashes the bytes anyway)."""
    if not data:
        raise ClaudeBatchMediaError("it is empty (0 bytes)")
    media_type = sniff(data[:SNIFF_BYTES])
    if media_type == "text/plain":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            media_type = None
        if _CONTROL.search(data):
            media_type = None
    if media_type is None:
        raise ClaudeBatchMediaError(
            f"it is {describe_unknown(data[:SNIFF_BYTES])}, not a type the API takes "
            f"({', '.join(limits.DOCUMENT_MEDIA_TYPES + limits.IMAGE_MEDIA_TYPES)})"
        )
    sha256 = hashlib.sha256(data).hexdigest() if digest else ""
    if media_type == "application/pdf":
        pages = pdf_pages(data)
        if pages > limits.MAX_PDF_PAGES:
            raise ClaudeBatchMediaError(f"the PDF has {pages} pages; the API takes at most {limits.MAX_PDF_PAGES}")
        return MediaFacts(media_type, len(data), sha256, pages=pages)
    if media_type in limits.IMAGE_MEDIA_TYPES:
        width, height = image_size(data, media_type)
        facts = MediaFacts(media_type, len(data), sha256, width=width, height=height)
        check_image(facts, limits.MAX_IMAGE_SIDE)
        return facts
    return MediaFacts(media_type, len(data), sha256)


def check_image(facts: MediaFacts, max_side: int) -> None:
    """An image's own limits: its bytes and its sides (``max_side`` depends on the request)."""
    if facts.size > limits.MAX_IMAGE_BYTES:
        raise ClaudeBatchMediaError(f"the image is {facts.size} bytes; the API takes at most {limits.MAX_IMAGE_BYTES}")
    if not facts.width or not facts.height:
        raise ClaudeBatchMediaError(f"the image is {facts.width}x{facts.height} pixels: empty")
    if max(facts.width, facts.height) > max_side:
        raise ClaudeBatchMediaError(
            f"the image is {facts.width}x{facts.height} pixels; the API takes at most {max_side} a side"
            + (
                f" when a request holds more than {limits.MANY_IMAGES} images"
                if max_side < limits.MAX_IMAGE_SIDE
                else ""
            )
        )


def check_request(facts: Sequence[MediaFacts]) -> str | None:
    """What one request's documents and images break together (``None``: nothing): the number
    of images, their sides when there are many, the PDF bytes of the request."""
    images = [item for item in facts if item.is_image]
    if len(images) > limits.MAX_IMAGES_PER_REQUEST:
        return f"the request holds {len(images)} images; the API takes at most {limits.MAX_IMAGES_PER_REQUEST}"
    if len(images) > limits.MANY_IMAGES:
        for item in images:
            try:
                check_image(item, limits.MAX_IMAGE_SIDE_MANY)
            except ClaudeBatchMediaError as exc:
                return str(exc)
    pdf_bytes = sum(item.size for item in facts if item.media_type == "application/pdf")
    if pdf_bytes > limits.MAX_PDF_BYTES_PER_REQUEST:
        return f"the request holds {pdf_bytes} bytes of PDF; the API takes at most {limits.MAX_PDF_BYTES_PER_REQUEST}"
    return None


def image_tokens(width: int, height: int) -> int:
    """Estimated tokens of an image: ``width * height / 750`` after the API's downscaling."""
    scale = min(1.0, IMAGE_RESIZE_EDGE / max(width, height, 1), math.sqrt(IMAGE_RESIZE_PIXELS / max(width * height, 1)))
    return max(1, math.ceil((width * scale) * (height * scale) / PIXELS_PER_TOKEN))


def base64_size(size: int) -> int:
    """Characters of ``size`` bytes in base64 (with padding): what an inline block sends."""
    return 4 * ((size + 2) // 3)


def blocks_in_tally(messages: object) -> int:
    """What a request's inline documents and images change in its tally: their estimated
    tokens minus the characters of their data. The renderer counts a request as its line's
    bytes plus this (:class:`pricing.RequestTally` reads bytes as tokens), and a token count
    scaled from a sample measures the sampled lines the same way."""
    change = 0
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            source = block.get("source") if isinstance(block, dict) else None
            if not isinstance(source, dict) or not isinstance(source.get("data"), str):
                continue
            data = source["data"]
            try:
                raw = data.encode() if source.get("type") == "text" else base64.b64decode(data, validate=True)
                change += inspect(raw).tokens() - len(data)
            except (ClaudeBatchMediaError, binascii.Error, ValueError):
                continue
    return change
