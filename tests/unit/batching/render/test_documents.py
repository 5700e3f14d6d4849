"""The request's content spec and each row's blocks: built from the bytes, refused naming the row."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.render.documents import (
    PROMPT,
    ContentRenderer,
    DocumentBlock,
    ImageBlock,
    content_spec,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.testing.sample_files import make_pdf, make_png


def test_the_one_line_form_puts_blocks_before_the_prompt() -> None:
    assert content_spec(documents=["doc"], images=["img"]) == (DocumentBlock("doc"), ImageBlock("img"), PROMPT)
    assert content_spec(content=[PROMPT, ImageBlock("img")]) == (PROMPT, ImageBlock("img"))
    assert content_spec(content=[ImageBlock("img")]) == (ImageBlock("img"), PROMPT)
    assert content_spec() == ()
    for bad in ([PROMPT, PROMPT], ["img"], [3]):
        with pytest.raises(ClaudeBatchInputError):
            content_spec(content=bad)
    with pytest.raises(ClaudeBatchInputError, match="not both"):
        content_spec(documents=["a"], content=[PROMPT])


def test_blocks_come_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    pdf = make_pdf([["x"]])
    (tmp_path / "looks-like.png").write_bytes(pdf)
    renderer = ContentRenderer(content_spec(content=[DocumentBlock("d", title="T", citations=True), PROMPT]))
    rendered = renderer.blocks([str(tmp_path / "looks-like.png")], "row 0")
    block = json.loads(rendered.json[0])
    assert block["source"] == {
        "type": "base64",
        "media_type": "application/pdf",
        "data": base64.b64encode(pdf).decode(),
    }
    assert block["title"] == "T" and block["citations"] == {"enabled": True}
    assert "looks-like" not in renderer.message_content(rendered, "Q").decode()  # no path in the request
    assert rendered.tokens == rendered.facts[0].tokens() and rendered.data_chars == len(block["source"]["data"])
    text = ContentRenderer(content_spec(documents=["d"])).blocks([b"plain words"], "row 1")
    assert json.loads(text.json[0])["source"] == {"type": "text", "media_type": "text/plain", "data": "plain words"}


def test_request_limits_are_checked_across_a_rows_blocks() -> None:
    images = [ImageBlock(f"i{n}") for n in range(21)]
    renderer = ContentRenderer(content_spec(content=images))
    with pytest.raises(ClaudeBatchInputError, match="row 3: .*more than 20 images"):
        renderer.blocks([make_png(2100, 1)] * 21, "row 3")
    with pytest.raises(ClaudeBatchInputError, match="row 4, column 'i0' is null"):
        renderer.blocks([None] * 21, "row 4")
