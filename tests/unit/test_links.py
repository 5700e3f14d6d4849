"""Extra links (links.py): URLs from the operator's attributes, saved before a deferral and
set again by the instance that resumes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_claude_batch.links import (
    DEFAULT_CONSOLE_URL_TEMPLATE,
    ClaudeBatchConsoleLink,
    ClaudeBatchesPageLink,
    ClaudeBatchOutputLink,
    batches_page_url,
    console_url,
    persist_links,
)
from tests.unit.conftest import manifest_of


def test_console_url_fills_the_template_and_a_bad_one_gives_none(caplog: pytest.LogCaptureFixture) -> None:
    assert console_url(None, "msgbatch_1") == DEFAULT_CONSOLE_URL_TEMPLATE.format(
        batch_id="msgbatch_1", workspace_id="default"
    )
    assert console_url("https://c/{workspace_id}/{batch_id}", "b", "w") == "https://c/w/b"
    assert console_url("https://c/{nope}", "b") is None
    assert "cannot be rendered" in caplog.text


def test_the_page_link_names_the_submit_task_and_its_map_index() -> None:
    assert batches_page_url(manifest_of([], run_id="manual__2026", conn_id="conn")) == (
        "/claude-batches/?conn_id=conn&dag_id=dag&run_id=manual__2026&task_id=submit"
    )
    assert batches_page_url(manifest_of([], map_index=3)).endswith("&task_id=submit&map_index=3")


def test_links_read_their_attribute_and_persist_saves_only_what_is_set() -> None:
    operator = SimpleNamespace(
        operator_extra_links=(ClaudeBatchConsoleLink(), ClaudeBatchesPageLink(), ClaudeBatchOutputLink()),
        console_link="https://console/b",
        batches_page_link=None,
    )
    ti_key: Any = None  # not read while the attribute is set
    assert ClaudeBatchConsoleLink().get_link(operator, ti_key=ti_key) == "https://console/b"
    pushed: dict[str, str] = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value))
    context: Any = {"ti": ti}
    persist_links(operator, context)
    assert pushed == {"_link_ClaudeBatchConsoleLink": "https://console/b"}


def test_without_an_attribute_a_link_is_empty() -> None:
    # No XCom is read for it (a missing one logs an error line): the link is empty.
    ti_key: Any = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
    assert ClaudeBatchOutputLink().get_link(SimpleNamespace(), ti_key=ti_key) == ""
