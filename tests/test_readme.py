"""The README cannot drift from the code: every code block in it is run here.

Python blocks are executed (DAG definitions are built, the fixture example is called with
the emulator fixture); JSON given to environment variables is parsed and used; shell
commands must name real commands and options of this project and of Airflow.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
BASH = [code for lang, code in BLOCKS if lang == "bash"]


def _commands() -> list[list[str]]:
    commands = []
    for block in BASH:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def test_the_readme_opens_with_exactly_the_two_commands() -> None:
    _, first_block = BLOCKS[0]
    assert README.startswith("```bash\n")
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "python3 dev.py demo",
        "python3 dev.py test",
    ]


def test_every_python_block_runs(claude_batch_emulator: Any) -> None:
    from airflow.sdk import DAG

    assert len(PYTHON) >= 3
    for code in PYTHON:
        namespace: dict[str, Any] = {"__name__": "readme"}
        # dont_inherit: run as a user would, without this file's `from __future__` (pydantic models).
        exec(compile(code, "README.md", "exec", dont_inherit=True), namespace)
        dags = [value for value in namespace.values() if isinstance(value, DAG)]
        tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
        assert dags or tests, f"a README block defines neither a DAG nor a test:\n{code[:200]}"
        for dag in dags:
            assert dag.task_dict, dag.dag_id
        for test in tests:
            test(claude_batch_emulator)


def test_the_quick_start_dag_is_wired_as_described() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(PYTHON[0], "README.md", "exec"), namespace)
    dag = namespace["dag"]
    assert [t.task_id for t in dag.topological_sort()] == ["submit", "wait", "land"]
    assert dag.get_task("wait").deferrable
    assert [a.uri for a in dag.get_task("land").outlets] == ["s3://lake/support/ticket_labels"]


def test_environment_variable_blocks_hold_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_claude_batch.batching.api.pricing import PriceTable
    from airflow_provider_claude_batch.config import setting
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    exports = {cmd[1].split("=", 1)[0]: cmd[1].split("=", 1)[1] for cmd in _commands() if cmd[0] == "export"}
    assert set(exports) == {"AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", "AIRFLOW__CLAUDE_BATCH__PRICES"}
    connection = json.loads(exports["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"])
    assert connection["conn_type"] == "claude_batch"
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", exports["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"])
    settings = ClaudeBatchHook().settings
    assert settings.api_key == "<your API key>" and settings.default_model == "claude-haiku-4-5"
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__PRICES", exports["AIRFLOW__CLAUDE_BATCH__PRICES"])
    assert PriceTable.load(setting("prices")).price("my-fine-tune") is not None


def test_the_configuration_table_lists_every_option() -> None:
    from airflow_provider_claude_batch.config import OPTIONS

    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert documented == list(OPTIONS)
    for option, spec in OPTIONS.items():
        if spec["default"]:
            assert f"| `{option}` | `{spec['default']}` |" in section


def _help(*args: str) -> str:
    done = subprocess.run([*args, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_shell_commands_exist_with_the_options_used() -> None:
    dev_commands = [*re.findall(r"if command == \"(\w+)\"", (ROOT / "dev.py").read_text()), "test", "demo"]
    checked = 0
    for command in _commands():
        if command[:2] == ["python3", "dev.py"]:
            assert command[2] in dev_commands, command
        elif command[:2] == ["airflow", "backfill"]:
            usage = _help(sys.executable, "-m", "airflow", *command[1:3])
            for option in (part for part in command if part.startswith("--")):
                assert option in usage, (option, command)
        elif command[0] in ("pip", "airflow", "export"):
            continue  # installing, and commands whose effect other tests check
        else:
            pytest.fail(f"the README runs a command this test does not know: {command}")
        checked += 1
    assert checked >= 4
    assert "--port" in _help(sys.executable, "-m", "airflow_provider_claude_batch.testing")


def test_every_test_the_guarantees_name_exists() -> None:
    """The Guarantees table names its proof as ``file::test`` (``::test`` repeats the file
    named before it in the row): each must be a test function of that file."""
    section = README[README.index("## Guarantees") : README.index("Known limits (")]
    named, missing = 0, []
    for row in section.splitlines():
        current = None
        for match in re.finditer(r"`((tests/[\w/]+\.py)?::(test_\w+))`", row):
            current = match.group(2) or current
            assert current is not None, f"{match.group(1)} names no file: {row[:60]}"
            named += 1
            if f"def {match.group(3)}(" not in (ROOT / current).read_text():
                missing.append(f"{current}::{match.group(3)}")
    assert named >= 20 and missing == []
