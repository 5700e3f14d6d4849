"""The tests mirror the source: each module of the package has its unit test file at the
same place under ``tests/unit/`` (``batching/render/chunks.py`` -> ``tests/unit/batching/render/test_chunks.py``),
and no test silences the type checker.

``NOT_MIRRORED_YET`` names the modules still covered only elsewhere, and where. It may only
shrink: a new module without a unit test file fails here, and so does an entry whose file now
exists."""

from __future__ import annotations

import re
from pathlib import Path

import airflow_provider_claude_batch

PACKAGE = Path(airflow_provider_claude_batch.__file__).parent
TESTS = Path(__file__).resolve().parents[1]

#: module -> where it is tested today.
NOT_MIRRORED_YET: dict[str, str] = {}


def _mirror(module: Path) -> Path:
    relative = module.relative_to(PACKAGE)
    return TESTS / "unit" / relative.parent / f"test_{relative.name}"


def test_every_module_has_its_unit_test_file() -> None:
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    missing = {str(m.relative_to(PACKAGE)) for m in modules if not _mirror(m).exists()}
    assert missing - NOT_MIRRORED_YET.keys() == set(), "add a unit test file for each of these modules"
    assert NOT_MIRRORED_YET.keys() - missing == set(), "these now have their test file: drop them from the list"


def test_no_test_silences_the_type_checker() -> None:
    marker = "type: " + "ignore"  # spelled apart so that this file does not match itself
    noisy = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py") if marker in p.read_text()]
    assert noisy == []


def test_the_architecture_doc_names_every_module_and_only_modules_that_exist() -> None:
    doc = (TESTS.parent / "docs" / "architecture.md").read_text()
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert {m for m in modules if f"`{m}`" not in doc} == set(), "give these modules their rule in the doc"
    named = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)*\.py)`", doc))
    gone = {m for m in named if not (PACKAGE / m).exists() and not (TESTS.parent / m).exists()}
    assert gone == set(), "the doc names modules that do not exist"


def test_the_architecture_doc_gives_each_module_one_row_of_rules() -> None:
    """A module's rules sit in one row of the ownership table: two rows for one module drift
    apart (one is updated, the other repeats or contradicts it)."""
    doc = (TESTS.parent / "docs" / "architecture.md").read_text()
    table = doc.split("| rule | module |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    owners = [row.rsplit("|", 2)[1].strip() for row in table.splitlines()]
    assert len(owners) > 40
    assert sorted({o for o in owners if owners.count(o) > 1}) == []
