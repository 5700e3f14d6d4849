"""The ``[claude_batch]`` options as plain data (config_options.py): importing them, and the
provider info that publishes them, loads nothing heavy, since Airflow calls
``get_provider_info`` in every process that imports ``airflow``."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("anthropic", "pyarrow", "pandas", "numpy", "httpx", "airflow_provider_claude_batch.exceptions")


def test_the_provider_info_imports_only_plain_data() -> None:
    code = (
        "import json, sys\n"
        "from airflow_provider_claude_batch.get_provider_info import get_provider_info\n"
        "info = get_provider_info()\n"
        f"print(json.dumps({{'heavy': sorted(n for n in {HEAVY!r} if n in sys.modules),"
        " 'options': sorted(info['config']['claude_batch']['options'])}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert "work_dir" in result["options"] and "answer_max_age" in result["options"]


def test_the_options_are_the_ones_config_reads() -> None:
    from airflow_provider_claude_batch import config, config_options

    assert config.OPTIONS is config_options.OPTIONS and config.SECTION == config_options.SECTION == "claude_batch"
    assert all({"description", "type", "default"} <= set(option) for option in config_options.OPTIONS.values())
