"""The documentation cannot drift from the code: every code block of the README and of the pages
under ``docs/`` is run here, and every relative link among them resolves.

Python blocks are executed (DAG definitions are built, the fixture example is called with
the emulator fixture); JSON given to environment variables is parsed and used, and every JSON
block parses; shell commands must name real commands and options of this project and of
Airflow. The Guarantees page must cite tests that exist and check an oracle.
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
DOCS = ROOT / "docs"
#: The README and every page of the site (not the built site, nor the API pages autoapi
#: writes while it builds).
PAGES = [
    ROOT / "README.md",
    *sorted(path for path in DOCS.rglob("*.md") if path.relative_to(DOCS).parts[0] not in ("_build", "api")),
]
TEXT = {page: page.read_text() for page in PAGES}
#: ``(page, language, code)`` of every fenced block that names its language.
BLOCKS = [
    (page, lang, code)
    for page, text in TEXT.items()
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)
]
PYTHON = [(page, code) for page, lang, code in BLOCKS if lang == "python"]
BASH = [code for _, lang, code in BLOCKS if lang == "bash"]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _commands() -> list[list[str]]:
    commands = []
    for block in BASH:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def test_every_python_block_runs(claude_batch_emulator: Any) -> None:
    from airflow.sdk import DAG

    assert len(PYTHON) >= 10
    for page, code in PYTHON:
        namespace: dict[str, Any] = {"__name__": "docs"}
        # dont_inherit: run as a user would, without this file's `from __future__` (pydantic models).
        exec(compile(code, _name(page), "exec", dont_inherit=True), namespace)
        dags = [value for value in namespace.values() if isinstance(value, DAG)]
        tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
        assert dags or tests, (
            f"a block of {_name(page)} defines neither a DAG (bound to a name: `with DAG(...) as dag:`)"
            f" nor a test_ function:\n{code[:200]}"
        )
        for dag in dags:
            assert dag.task_dict, dag.dag_id
        for test in tests:
            test(claude_batch_emulator)


def test_every_json_block_parses() -> None:
    blocks = [(page, code) for page, lang, code in BLOCKS if lang == "json"]
    assert len(blocks) >= 2
    for page, code in blocks:
        try:
            json.loads(code)
        except json.JSONDecodeError as error:
            pytest.fail(f"a JSON block of {_name(page)} does not parse: {error}")


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

    page = TEXT[DOCS / "configuration.md"]
    documented = re.findall(r"^\| `(\w+)` \|", page, flags=re.M)
    assert documented == list(OPTIONS)
    for option, spec in OPTIONS.items():
        if spec["default"]:
            assert f"| `{option}` | `{spec['default']}` |" in page


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
            pytest.fail(f"the docs run a command this test does not know: {command}")
        checked += 1
    assert checked >= 4
    assert "--port" in _help(sys.executable, "-m", "airflow_provider_claude_batch.testing")


# -- links --------------------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """A heading's link anchor as GitHub (and MyST) make it: lower case, punctuation dropped,
    spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(text: str) -> str:
    """``text`` without its fenced blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def _anchors(page: Path) -> set[str]:
    """The anchors a page offers. The site's landing page includes the README, so it offers the
    README's too."""
    text = page.read_text()
    if page == DOCS / "index.md":
        text += TEXT[ROOT / "README.md"]
    return {
        _anchor(heading)
        for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), flags=re.M)
    }


def _links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _prose(TEXT[page]))


def test_every_relative_link_reaches_a_file_and_heading_that_exist() -> None:
    broken, checked = [], 0
    for page in PAGES:
        for link in _links(page):
            if re.match(r"^[a-z][a-z+.-]*:", link):
                continue  # http(s), mailto: not ours to check offline
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            checked += 1
            if not target.exists():
                broken.append(f"{_name(page)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{_name(page)}: {link} (no such heading)")
    assert checked >= 50 and broken == []


def test_every_page_is_in_the_sites_navigation_and_linked_from_the_readme() -> None:
    """A page nobody can reach is a page nobody reads: each is in a toctree of the landing page
    (the site's navigation) and in the README's Documentation list."""
    index = TEXT[DOCS / "index.md"]
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", index, flags=re.S)
    navigation = {
        line.strip() for block in toctrees for line in block.splitlines() if line.strip() and not line.startswith(":")
    }
    pages = {page.relative_to(DOCS).with_suffix("").as_posix() for page in PAGES if page.parent == DOCS} - {"index"}
    assert navigation == pages
    readme_links = {link.split("#")[0] for link in _links(ROOT / "README.md")}
    assert {f"docs/{page}.md" for page in pages} - readme_links == set()


# -- the Guarantees page ------------------------------------------------------------------------

GUARANTEES_PAGE = TEXT[DOCS / "guarantees.md"]
GUARANTEES = GUARANTEES_PAGE[: GUARANTEES_PAGE.index("## Known limits")]


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
