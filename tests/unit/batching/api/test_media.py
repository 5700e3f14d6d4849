"""Media types from the bytes, page counts and dimensions, the API's limits, token estimates."""

from __future__ import annotations

import zlib

import pytest

from airflow_provider_claude_batch.batching.api import limits, media
from airflow_provider_claude_batch.testing.sample_files import make_gif, make_pdf, make_png


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("caf\u00e9 menu".encode(), "text/plain"),
        ("caf\u00e9".encode()[:-1], "text/plain"),  # a character cut at the end of the head
        (b"PK\x03\x04rest", None),
        (b"\x00\x01", None),
    ],
)
def test_sniff_reads_the_bytes(head: bytes, expected: str | None) -> None:
    assert media.sniff(head) == expected


def test_dimensions_of_each_image_kind() -> None:
    assert media.image_size(make_png(640, 480), "image/png") == (640, 480)
    assert media.image_size(make_gif(12, 34), "image/gif") == (12, 34)
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08\x01\x2c\x02\x58\x03" + b"\x00" * 12
    assert media.image_size(jpeg, "image/jpeg") == (600, 300)
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little")
    assert media.image_size(webp, "image/webp") == (100, 50)
    with pytest.raises(media.ClaudeBatchMediaError, match="corrupt"):
        media.image_size(b"\xff\xd8\xff\xe0", "image/jpeg")


def test_pdf_pages_also_in_compressed_object_streams() -> None:
    assert media.pdf_pages(make_pdf([["a"], ["b"], ["c"]])) == 3
    packed = zlib.compress(b"1 0 << /Type /Page >> << /Type /Page >>")
    hidden = b"%PDF-1.5\n5 0 obj\n<< /Type /ObjStm /N 2 >>\nstream\n" + packed + b"\nendstream\nendobj\n%%EOF\n"
    assert media.pdf_pages(hidden) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (make_pdf([["a"]], encrypted=True), "encrypted"),
        (make_pdf([["a"]])[:-30], "cut short"),
        (b"%PDF-1.4\nnothing\n%%EOF\n", "no page"),
        (make_pdf([["a"]] * (limits.MAX_PDF_PAGES + 1)), "101 pages"),
        (make_png(limits.MAX_IMAGE_SIDE + 1, 1), "at most 8000 a side"),
        (b"II*\x00tiff", "TIFF"),
    ],
)
def test_inspect_refuses_what_the_api_refuses(data: bytes, message: str) -> None:
    with pytest.raises(media.ClaudeBatchMediaError, match=message):
        media.inspect(data)


def test_request_limits_together() -> None:
    small = media.MediaFacts("image/png", 10, "x", width=2100, height=10)
    assert media.check_request([small] * limits.MANY_IMAGES) is None
    assert "more than 20 images" in (media.check_request([small] * (limits.MANY_IMAGES + 1)) or "")
    pdf = media.MediaFacts("application/pdf", limits.MAX_PDF_BYTES_PER_REQUEST // 2 + 1, "x", pages=1)
    assert "bytes of PDF" in (media.check_request([pdf, pdf]) or "")


def test_token_estimates() -> None:
    assert media.image_tokens(750, 100) == 100
    # Downscaled first: a huge image costs what its resized copy does.
    assert media.image_tokens(8000, 8000) == media.image_tokens(1072, 1072) + 1 <= 1534
    assert media.MediaFacts("application/pdf", 1, "x", pages=4).tokens() == 4 * media.PDF_TOKENS_PER_PAGE
    assert media.base64_size(1) == 4 and media.base64_size(3) == 4 and media.base64_size(4) == 8


def test_blocks_in_tally_swaps_data_for_tokens() -> None:
    import base64

    pdf = make_pdf([["a"]] * 2)
    data = base64.b64encode(pdf).decode()
    block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}
    messages = [{"role": "user", "content": [block, {"type": "text", "text": "q"}]}]
    assert media.blocks_in_tally(messages) == 2 * media.PDF_TOKENS_PER_PAGE - len(data)
    assert media.blocks_in_tally([{"role": "user", "content": "plain"}]) == 0
