"""The emulator's image and document blocks over real HTTP with the unmodified SDK: each answer
carries the facts of the document it received, bad blocks end their request errored naming
the block (the rest of the batch succeeds), and media tokens are counted from pages and pixels.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, cast

import anthropic
import pytest

from airflow_provider_claude_batch.batching.api import media
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.emulator_results import EMULATOR_TAG
from airflow_provider_claude_batch.testing.sample_files import make_gif, make_pdf, make_png


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _request(custom_id: str, *blocks: dict[str, Any], **params: Any) -> dict[str, Any]:
    content = [*blocks, {"type": "text", "text": "What is this?"}]
    return {
        "custom_id": custom_id,
        "params": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 400,
            "messages": [{"role": "user", "content": content}],
            **params,
        },
    }


def _pdf_block(data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": _b64(data)},
        **extra,
    }


def _image_block(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": _b64(data)}}


def _results(client: anthropic.Anthropic, requests: list[dict[str, Any]]) -> dict[str, Any]:
    batch = client.messages.batches.create(requests=cast(Any, requests))
    return {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}


def _facts(result: Any) -> list[dict[str, Any]]:
    text = result.message.content[0].text
    assert text.startswith(f"{EMULATOR_TAG} documents: ")
    return json.loads(text.split("documents: ", 1)[1])


def test_each_answer_names_the_document_it_received(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    pdfs = [make_pdf([[f"Invoice {n}"]] * (n + 1)) for n in range(3)]
    png, gif = make_png(300, 200), make_gif(40, 30)
    requests = [_request(f"pdf-{n}", _pdf_block(data)) for n, data in enumerate(pdfs)]
    requests.append(_request("two-images", _image_block(png), _image_block(gif, "image/gif")))
    requests.append(
        _request(
            "text", {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi\nthere"}}
        )
    )
    results = _results(client, requests)
    for n, data in enumerate(pdfs):
        (facts,) = _facts(results[f"pdf-{n}"])
        assert facts == {
            "kind": "document",
            "media_type": "application/pdf",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "pages": n + 1,
        }
        # Pages are counted as tokens; the base64 is not counted as prompt text.
        usage = results[f"pdf-{n}"].message.usage
        assert (n + 1) * media.PDF_TOKENS_PER_PAGE < usage.input_tokens < (n + 1) * media.PDF_TOKENS_PER_PAGE + 100
    png_facts, gif_facts = _facts(results["two-images"])
    assert (png_facts["width"], png_facts["height"], png_facts["sha256"]) == (300, 200, hashlib.sha256(png).hexdigest())
    assert (gif_facts["media_type"], gif_facts["width"]) == ("image/gif", 40)
    assert _facts(results["text"])[0]["media_type"] == "text/plain"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            _image_block(make_png(10, 10), "image/jpeg"),
            "specified using the image/jpeg media type, but it appears to be a image/png",
        ),
        (
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}},
            "invalid base64",
        ),
        (_pdf_block(make_pdf([["x"]], encrypted=True)), "encrypted"),
        (_pdf_block(make_pdf([["x"]])[:-40]), "corrupt"),
        (_pdf_block(make_pdf([["x"]] * 101)), "101 pages"),
        (_image_block(make_png(8001, 1)), "at most 8000 a side"),
        (_pdf_block(make_png(5, 5)), "image/png"),
        ({"type": "image", "source": {"type": "file", "file_id": "file_nope"}}, "File not found: file_nope"),
    ],
    ids=["mismatch", "base64", "encrypted", "cut", "pages", "pixels", "png-as-pdf", "unknown-file"],
)
def test_a_bad_block_errors_its_request_only(client: anthropic.Anthropic, block: dict[str, Any], message: str) -> None:
    results = _results(client, [_request("bad", block), _request("good", _image_block(make_png(2, 2)))])
    assert results["good"].type == "succeeded"
    assert results["bad"].type == "errored"
    assert results["bad"].error.error.type == "invalid_request_error"
    assert message in results["bad"].error.error.message


def test_many_images_shrink_the_side_limit(client: anthropic.Anthropic) -> None:
    big = make_png(2100, 1)
    results = _results(client, [_request("one", _image_block(big)), _request("many", *[_image_block(big)] * 21)])
    assert results["one"].type == "succeeded"
    assert "more than 20 images" in results["many"].error.error.message


def test_citations_cite_each_document_and_refuse_an_output_format(client: anthropic.Anthropic) -> None:
    cited = _pdf_block(make_pdf([["ACME Corp", "Total 12.50"]]), title="inv", citations={"enabled": True})
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    results = _results(
        client,
        [
            _request("cited", cited),
            _request("typed", cited, output_config={"format": {"type": "json_schema", "schema": schema}}),
        ],
    )
    citation = results["cited"].message.content[1].citations[0]
    assert (citation.type, citation.cited_text, citation.document_index, citation.document_title) == (
        "page_location",
        "ACME Corp",
        0,
        "inv",
    )
    assert citation.start_page_number == 1
    assert "Citations are not supported" in results["typed"].error.error.message


def test_count_tokens_counts_pages_and_pixels(client: anthropic.Anthropic) -> None:
    params = _request("x", _pdf_block(make_pdf([["a"]] * 2)), _image_block(make_png(750, 100)))["params"]
    del params["max_tokens"]
    counted = client.messages.count_tokens(**params).input_tokens
    expected = 2 * media.PDF_TOKENS_PER_PAGE + media.image_tokens(750, 100)
    assert expected < counted < expected + 100
