"""The emulator's Files API over real HTTP with the SDK's beta client: upload, metadata, list,
delete, downloads refused, the beta header required, files scoped by workspace, ``file_id``
references resolved in batch requests, and the upload counters tests rely on."""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import anthropic
import httpx
import pytest

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import make_pdf
from tests.helpers import TEST_API_KEY


@pytest.fixture
def files_client(client: anthropic.Anthropic) -> anthropic.Anthropic:
    """The SDK with the Files API's beta flag on every call (the SDK does not add it itself)."""
    return client.with_options(default_headers={"anthropic-beta": limits.FILES_API_BETA})


def _request(custom_id: str, file_id: str) -> dict[str, object]:
    block = {"type": "document", "source": {"type": "file", "file_id": file_id}}
    content = [block, {"type": "text", "text": "Summarise"}]
    return {
        "custom_id": custom_id,
        "params": {"model": "claude-sonnet-4-5", "max_tokens": 300, "messages": [{"role": "user", "content": content}]},
    }


def test_upload_list_metadata_delete(files_client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    client = files_client
    data = make_pdf([["Invoice"]])
    uploaded = client.beta.files.upload(file=("a.pdf", data, "application/pdf"))
    assert (uploaded.size_bytes, uploaded.filename, uploaded.downloadable) == (len(data), "a.pdf", False)
    assert client.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id
    assert [item.id for item in client.beta.files.list()] == [uploaded.id]
    with pytest.raises(anthropic.BadRequestError, match="not downloadable"):
        client.beta.files.download(uploaded.id)
    client.beta.files.delete(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(uploaded.id)
    state = emulator.emulator.snapshot()["files"]
    assert (state["uploads"], state["upload_bytes"], state["deletes"], state["stored"]) == (1, len(data), 1, 0)


def test_files_calls_need_the_beta_header(emulator: RunningEmulator) -> None:
    headers = {"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01"}
    answer = httpx.post(
        f"{emulator.base_url}/v1/files", headers=headers, files={"file": ("a.txt", b"hi", "text/plain")}
    )
    assert answer.status_code == 400
    assert limits.FILES_API_BETA in answer.json()["error"]["message"]
    assert emulator.emulator.snapshot()["files"].get("uploads", 0) == 0


def test_file_ids_resolve_in_their_own_workspace_only(
    files_client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    client = files_client
    data = make_pdf([["Invoice"]] * 3)
    uploaded = client.beta.files.upload(file=("a.pdf", data, "application/pdf"))
    other = client.with_options(default_headers={"anthropic-workspace-id": "wrkspc_other"})
    with pytest.raises(anthropic.NotFoundError):
        other.beta.files.retrieve_metadata(uploaded.id)
    deleted = client.beta.files.upload(file=("b.pdf", data, "application/pdf"))
    client.beta.files.delete(deleted.id)
    requests = [_request("mine", uploaded.id), _request("gone", deleted.id), _request("unknown", "file_missing")]
    batch = client.messages.batches.create(requests=cast(Any, requests))
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    facts = json.loads(results["mine"].message.content[0].text.split("documents: ", 1)[1])
    assert (facts[0]["sha256"], facts[0]["pages"]) == (hashlib.sha256(data).hexdigest(), 3)
    assert f"File not found: {deleted.id}" in results["gone"].error.error.message
    assert "File not found: file_missing" in results["unknown"].error.error.message
    foreign = other.messages.batches.create(requests=cast(Any, [_request("theirs", uploaded.id)]))
    (line,) = list(other.messages.batches.results(foreign.id))
    assert line.result.type == "errored"
