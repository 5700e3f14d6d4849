"""No function of the package is longer than 70 lines (``get_provider_info`` aside: it is one
literal dict, as the Apache providers' are). A longer function has steps that deserve names;
splitting it is how a newcomer finds them."""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_claude_batch

PACKAGE = Path(airflow_provider_claude_batch.__file__).parent
LIMIT = 70
EXEMPT = {"get_provider_info.py:get_provider_info"}


def _long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                name = f"{path.relative_to(PACKAGE)}:{node.name}"
                if lines > LIMIT and name not in EXEMPT:
                    found.append(f"{name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    assert _long_functions() == []
