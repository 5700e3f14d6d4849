"""The ``[claude_batch]`` section: declared by the provider (so Airflow shows its defaults) and
read like Airflow's own options, from airflow.cfg or the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import airflow_cli

PROBE = """
import json
from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.config import setting, trigger_concurrency
from airflow_provider_claude_batch.workdir import default_work_dir
price = PriceTable.load(setting("prices")).price("house-model-20261101")
print(json.dumps([default_work_dir(), None if price is None else price.output, trigger_concurrency()]))
"""


def _probe(home: Path, **env: str) -> list[object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__CLAUDE_BATCH__", "CLAUDE_BATCH_"))}
    clean.update(AIRFLOW_HOME=str(home), AIRFLOW_CONFIG=str(home / "airflow.cfg"), **env)
    done = subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_options_come_from_airflow_cfg_and_the_environment_wins(tmp_path: Path) -> None:
    prices = {"house-model": {"input": 1, "output": 7, "cache_write": 1, "cache_read": 0.1}}
    (tmp_path / "airflow.cfg").write_text(
        f"[claude_batch]\nwork_dir = {tmp_path / 'from-cfg'}\nprices = {json.dumps(prices)}\ntrigger_concurrency = 16\n"
    )
    assert _probe(tmp_path) == [str(tmp_path / "from-cfg"), 7, 16]
    assert _probe(tmp_path, AIRFLOW__CLAUDE_BATCH__WORK_DIR="s3://lake/_claude_batch/")[0] == "s3://lake/_claude_batch/"


def test_unset_options_fall_back_to_the_documented_defaults(tmp_path: Path) -> None:
    (tmp_path / "airflow.cfg").write_text("[core]\nload_examples = False\n")
    assert _probe(tmp_path) == [str(tmp_path / "claude_batch"), None, 128]


def test_airflow_knows_the_section_and_its_defaults(airflow_home: Path) -> None:
    value = airflow_cli("config", "get-value", "claude_batch", "trigger_concurrency")
    assert value.strip().splitlines()[-1] == "128"
    listing = airflow_cli("config", "list", "--section", "claude_batch", "--include-descriptions")
    assert "work_dir" in listing and "shared object storage" in listing


def test_a_bad_trigger_concurrency_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_claude_batch.config import trigger_concurrency

    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGER_CONCURRENCY", "many")
    with pytest.raises(ValueError, match=r"\[claude_batch\] trigger_concurrency .* 'many'"):
        trigger_concurrency()
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGER_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="at least 1"):
        trigger_concurrency()
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGER_CONCURRENCY", "32")
    assert trigger_concurrency() == 32


def test_answer_max_age_is_read_as_an_age_and_named_when_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from airflow_provider_claude_batch.config import answer_max_age
    from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError

    monkeypatch.delenv("AIRFLOW__CLAUDE_BATCH__ANSWER_MAX_AGE", raising=False)
    assert answer_max_age() == timedelta(days=30)  # the declared default, "30d"
    for value, expected in (("12h", timedelta(hours=12)), ("0", timedelta(0)), ("90", timedelta(seconds=90))):
        monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__ANSWER_MAX_AGE", value)
        assert answer_max_age() == expected
    for value in ("soon", "-1d", "1e30d"):
        monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__ANSWER_MAX_AGE", value)
        with pytest.raises(ClaudeBatchParameterError, match=r"\[claude_batch\] answer_max_age .*" + value):
            answer_max_age()
