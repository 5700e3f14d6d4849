"""Small valid documents and images written in pure Python, for tests, examples and benchmarks.

Invariants: every function is deterministic (the same arguments give the same bytes, so a
test knows each file's sha256); the PDFs are uncompressed PDF 1.4 with a correct cross
reference table and one text line per page line (Helvetica), which the emulator reads back
for its citations; the PNGs are 8-bit RGB with one colour, any size.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any


def _pdf_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: Sequence[Sequence[str]], *, encrypted: bool = False, padding: int = 0) -> bytes:
    """A PDF with one page per item of ``pages``, each showing its lines of text.

    ``encrypted`` adds an ``/Encrypt`` entry to the trailer (what the API refuses);
    ``padding`` adds that many bytes of a comment, to make large files cheaply.
    """
    count = len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        (
            "<< /Type /Pages /Kids [" + " ".join(f"{4 + 2 * i} 0 R" for i in range(count)) + f"] /Count {count} >>"
        ).encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, lines in enumerate(pages):
        text = "BT /F1 12 Tf 14 TL 72 720 Td " + " ".join(f"({_pdf_text(line)}) Tj T*" for line in lines) + " ET"
        content = text.encode("latin-1", "replace")
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * index} 0 R "
                "/Resources << /Font << /F1 3 0 R >> >> >>"
            ).encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    if padding:
        out += b"%" + b"x" * max(0, padding - 2) + b"\n"
    offsets = []
    for number, item in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + item + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    encrypt = b" /Encrypt << /Filter /Standard /V 1 /R 2 >>" if encrypted else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, encrypt, xref)
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(width: int, height: int, color: tuple[int, int, int] = (200, 200, 200)) -> bytes:
    """A one-colour 8-bit RGB PNG of ``width`` x ``height`` pixels."""
    row = b"\x00" + bytes(color) * width
    pixels = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def make_gif(width: int, height: int) -> bytes:
    """A one-colour GIF89a of ``width`` x ``height`` pixels."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b";"


_VENDORS = ("ACME Corp", "Globex GmbH", "Initech Ltd", "Umbrella SA", "Stark Industries")
_CURRENCIES = ("USD", "EUR", "GBP")


def invoice_pdf(number: int) -> bytes:
    """Invoice ``number`` as a one- or two-page PDF: vendor, date, currency, lines and total."""
    vendor, currency = _VENDORS[number % len(_VENDORS)], _CURRENCIES[number % len(_CURRENCIES)]
    items = [(f"Item {k + 1}", (number * 7 + k * 13) % 90 + 10) for k in range(1 + number % 4)]
    lines = [vendor, f"Invoice INV-{number:05d}", f"Date 2026-12-{1 + number % 28:02d}", f"Currency {currency}"]
    lines += [f"{name}: {amount}.00" for name, amount in items]
    pages = [lines, [f"Total {sum(amount for _, amount in items)}.00 {currency}"]] if number % 2 else [lines]
    return make_pdf(pages)


def write_invoice_folder(folder: Any, invoices: int, receipts: int = 0) -> list[Any]:
    """``invoices`` invoice PDFs (``invoice-NNNNN.pdf``) and ``receipts`` receipt images
    (``receipt-NNNNN.png``, each its own size, so its own bytes) in ``folder``; the paths written."""
    from pathlib import Path

    target = Path(str(folder))
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(invoices):
        written.append(target / f"invoice-{number:05d}.pdf")
        written[-1].write_bytes(invoice_pdf(number))
    for number in range(receipts):
        written.append(target / f"receipt-{number:05d}.png")
        written[-1].write_bytes(make_png(400 + number, 600, (255, 255 - number % 200, 240)))
    return written
