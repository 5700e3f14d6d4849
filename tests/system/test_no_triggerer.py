"""``[claude_batch] triggerer = auto`` against a real api-server: with no triggerer in the
deployment its health endpoint says so and a task would not defer; once a triggerer runs and
heartbeats, the same check lets it defer. (What the waits then do without one:
``tests/airflow/test_no_triggerer.py``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_claude_batch.triggerer import check_triggerer
from tests.system.stack import AirflowStack, wait_until

pytestmark = pytest.mark.system


def test_the_check_reads_the_real_api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = AirflowStack(
        tmp_path / "airflow",
        {},
        components={"api-server": ["api-server"], "triggerer": ["triggerer"]},
    )
    stack.airflow("db", "migrate")
    try:
        stack.start_component("api-server")

        def health() -> dict[str, Any] | None:
            stack.check_alive()
            try:
                return dict(httpx.get(f"{stack.base_url}/api/v2/monitor/health", timeout=5).json())
            except (httpx.HTTPError, ValueError):
                return None

        assert wait_until(health, timeout=180, what="the api-server")["triggerer"]["status"] is None
        monkeypatch.delenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", raising=False)
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"{stack.base_url}/execution/")
        check = check_triggerer()
        assert not check.running and "no triggerer has run in this deployment" in check.why

        stack.start_component("triggerer")
        running = wait_until(lambda: check_triggerer().running, timeout=180, what="a healthy triggerer")
        final = health()
        assert running and final is not None and final["triggerer"]["status"] == "healthy"
    finally:
        stack.stop()
