"""The README cannot drift from the code: every code block in it is run here.

Python blocks are executed (DAG definitions are built, the fixture example is called with
the emulator fixture); JSON given to environment variables is parsed and used; shell
commands must name real commands and options of this project and of Airflow.
"""

from __future__ import annotations

import ast
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


def test_the_readme_opens_with_its_title_then_exactly_the_two_commands() -> None:
    _, first_block = BLOCKS[0]
    assert README.startswith("# airflow-provider-claude-batch\n\n```bash\n")
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "python3 dev.py demo",
        "python3 dev.py test",
    ]


def _anchor(heading: str) -> str:
    """A heading's link anchor as GitHub makes it: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_link_every_section() -> None:
    contents = README.split("**Contents.**", 1)[1].split("\n\n", 1)[0]
    linked = re.findall(r"\]\(#([\w-]+)\)", contents)
    sections = [_anchor(heading) for heading in re.findall(r"^## (.+)$", README, flags=re.M)]
    assert linked == sections, "the Contents list every ## section, in order"


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


GUARANTEES = README[README.index("## Guarantees") : README.index("Known limits (")]


def _guarantee_citations() -> list[tuple[str, str | None]]:
    """What the Guarantees table cites as its proof, as ``(file, test)``: ``file::test``
    (``::test`` repeats the file named before it in the row), or a file alone (``test`` None:
    every test of that file, "a test per case")."""
    cited: list[tuple[str, str | None]] = []
    for row in GUARANTEES.splitlines():
        current = None
        for match in re.finditer(r"`((tests/[\w/]+\.py)?(?:::(test_\w+))?)`", row):
            current = match.group(2) or current
            assert current is not None, f"{match.group(1)} names no file: {row[:60]}"
            cited.append((current, match.group(3)))
    return cited


def _test_functions(path: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse((ROOT / path).read_text())
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }


def test_every_test_the_guarantees_name_exists() -> None:
    """Each test the Guarantees table names is a test function of the file named."""
    cited = _guarantee_citations()
    missing = [f"{path}::{name}" for path, name in cited if name is not None and name not in _test_functions(path)]
    assert len(cited) >= 20 and missing == []


def _bound_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The names a test binds itself: its parameters (fixtures), and every name it assigns
    (variables, loop and ``with`` targets, comprehensions, nested functions and their
    parameters, imports made inside it)."""
    bound = set()
    for node in ast.walk(function):
        if isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is not function:
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound


def _oracle_problems(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Why ``function`` could pass without checking what it ran: an ``assert`` that reads
    nothing the test made and calls nothing (``assert True``, ``assert sys.modules``: true
    whatever happened), or no oracle at all. An oracle is an ``assert`` comparing something the test made (an
    emulator counter, task states, rows by custom_id, a manifest's batch ids, ...) with an
    expected value, or a ``pytest.raises`` around what it runs."""
    bound = _bound_names(function)
    problems, oracles = [], 0
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            parts = list(ast.walk(node.test))
            reads = {part.id for part in parts if isinstance(part, ast.Name)}
            if not reads & bound and not any(isinstance(part, ast.Call) for part in parts):
                problems.append(f"line {node.lineno}: `assert {ast.unparse(node.test)}` reads nothing the test made")
            elif any(isinstance(part, ast.Compare) for part in parts):
                oracles += 1
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "raises"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "pytest"
        ):
            oracles += 1
    if not oracles:
        problems.append("no assert compares what the test ran with an expected value, and no pytest.raises")
    return problems


def test_every_test_the_guarantees_name_checks_an_oracle() -> None:
    """A cited test cannot silently become a no-op: each holds an oracle check, and none of its
    asserts is true whatever the run did."""
    checked, problems = 0, []
    for path, name in _guarantee_citations():
        functions = _test_functions(path)
        assert functions, f"{path} holds no test"
        for test_name in [name] if name is not None else list(functions):
            if test_name in functions:  # a missing one: test_every_test_the_guarantees_name_exists
                checked += 1
                problems += [f"{path}::{test_name}: {problem}" for problem in _oracle_problems(functions[test_name])]
    assert checked >= 20 and problems == []


def test_the_bad_input_row_counts_the_cases() -> None:
    from tests.hostile.test_bad_input import CASES

    ((total, under_airflow),) = re.findall(
        r"(\d+) bad inputs .*?, (\d+) of them also under `dag\.test\(\)`", GUARANTEES
    )
    assert (int(total), int(under_airflow)) == (len(CASES), sum(case.in_airflow for case in CASES))
