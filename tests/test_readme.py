"""The README is a first visit: its title, the two commands, a quick start that is wired as it
says, and links into docs/ (whose pages, with the README's code blocks and links, are checked
by tests/test_docs.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]


def test_the_readme_opens_with_its_title_then_exactly_the_two_commands() -> None:
    _, first_block = BLOCKS[0]
    assert README.startswith("# airflow-provider-claude-batch\n\n```bash\n")
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "python3 dev.py demo",
        "python3 dev.py test",
    ]


def test_the_readme_stays_what_a_first_visit_needs() -> None:
    """Everything else lives in docs/: the README stays short enough to read on a first visit."""
    assert len(README.splitlines()) <= 250


def _anchor(heading: str) -> str:
    """A heading's link anchor as GitHub makes it: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_link_every_section() -> None:
    contents = README.split("**Contents.**", 1)[1].split("\n\n", 1)[0]
    linked = re.findall(r"\]\(#([\w-]+)\)", contents)
    sections = [_anchor(heading) for heading in re.findall(r"^## (.+)$", README, flags=re.M)]
    assert linked == sections, "the Contents list every ## section, in order"


def test_the_quick_start_dag_is_wired_as_described() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(PYTHON[0], "README.md", "exec"), namespace)
    dag = namespace["dag"]
    assert [t.task_id for t in dag.topological_sort()] == ["submit", "wait", "land"]
    assert dag.get_task("wait").deferrable
    assert [a.uri for a in dag.get_task("land").outlets] == ["s3://lake/support/ticket_labels"]
