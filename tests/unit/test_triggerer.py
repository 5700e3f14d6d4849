"""Whether a task may defer (triggerer.py): the configured answer, where the health endpoint
is, and an endpoint that cannot be read counting as a triggerer (Airflow's own behaviour).
A real api-server without a triggerer: ``tests/system/test_no_triggerer.py``."""

from __future__ import annotations

import logging
import socket

import pytest

from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError
from airflow_provider_claude_batch.triggerer import HEALTH_PATH, check_triggerer, health_url, may_defer


@pytest.mark.parametrize(("mode", "running"), [("yes", True), ("no", False), (" No ", False)])
def test_a_configured_answer_needs_no_check(monkeypatch: pytest.MonkeyPatch, mode: str, running: bool) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", mode)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://127.0.0.1:9/execution/")  # never asked
    check = check_triggerer(timeout=0.01)
    assert check.running is running and "[claude_batch] triggerer = " in check.why


def test_an_unknown_answer_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", "sometimes")
    with pytest.raises(ClaudeBatchParameterError, match=r"\[claude_batch\] triggerer must be one of"):
        check_triggerer()


def test_the_health_endpoint_is_on_the_server_the_task_reports_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "https://airflow.example:8443/base/execution/")
    assert health_url() == "https://airflow.example:8443/base" + HEALTH_PATH
    monkeypatch.delenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://web:8080/")
    assert health_url() == "http://web:8080" + HEALTH_PATH


def test_an_endpoint_that_cannot_be_read_defers_as_airflow_would(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://127.0.0.1:{port}/execution/")
    check = check_triggerer(timeout=2)
    assert check.running and f"127.0.0.1:{port}{HEALTH_PATH} could not be read" in check.why
    with caplog.at_level(logging.WARNING):
        assert may_defer(logging.getLogger("t"), "Waiting here") is True
    assert caplog.records == []


def test_no_triggerer_warns_once_naming_why_and_what_instead(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", "no")
    log = logging.getLogger("t")
    with caplog.at_level(logging.WARNING):
        assert may_defer(log, "Waiting in reschedule mode") is False
        assert may_defer(log, "Waiting in reschedule mode", warn=False) is False
    (record,) = caplog.records
    assert "No triggerer to defer to: [claude_batch] triggerer = no. Waiting in reschedule mode" in record.getMessage()
