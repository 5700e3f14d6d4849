"""Sphinx configuration of the documentation site (``python3 dev.py docs``).

The pages are the Markdown files of this folder (MyST); the API reference is generated from the
package's docstrings by sphinx-autoapi, which reads the source without importing it, so the
build needs neither Airflow's configuration nor a network, and is built with warnings as
errors.
"""

from __future__ import annotations

from pathlib import Path

import astroid
import tomllib

ROOT = Path(__file__).resolve().parent.parent
_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

project = _PROJECT["name"]
release = _PROJECT["version"]
version = release
author = "airflow-provider-claude-batch contributors"
copyright = author

extensions = ["myst_parser", "autoapi.extension"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "benchmarks.json"]

# MyST: GitHub's heading anchors, so that `page.md#a-heading` links work on GitHub and here.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# The API reference, from the docstrings (ReStructuredText, as the package writes them).
autoapi_type = "python"
PACKAGE = ROOT / "airflow_provider_claude_batch"
#: The modules a DAG author or a test writer uses; the rest are internals (docs/architecture.md
#: says which module owns which rule) and stay out of the reference. Package ``__init__`` files
#: are kept so that the public modules have their place in the tree.
PUBLIC_MODULES = {
    "hooks/claude_batch.py",
    "operators/submit.py",
    "operators/compact_answers.py",
    "operators/delete_files.py",
    "sensors/batch.py",
    "transfers/batch_to_parquet.py",
    "decorators/claude_batch.py",
    "triggers/batch.py",
    "exceptions.py",
    "links.py",
    "config.py",
    "batching/api/pricing.py",
    "batching/land/partitions.py",
    "batching/reuse/answer_store.py",
    "testing/emulator.py",
    "testing/federation.py",
    "testing/pytest_plugin.py",
}
autoapi_dirs = [str(PACKAGE)]
autoapi_ignore = [
    str(path)
    for path in sorted(PACKAGE.rglob("*.py"))
    if path.name != "__init__.py" and path.relative_to(PACKAGE).as_posix() not in PUBLIC_MODULES
]
autoapi_root = "api"
autoapi_add_toctree_entry = False
autoapi_keep_files = False
autoapi_options = ["members", "undoc-members", "show-inheritance", "show-module-summary"]
autoapi_member_order = "groupwise"
autoapi_python_class_content = "both"

html_theme = "furo"
html_title = "Claude Message Batches for Apache Airflow"
pygments_style = "sphinx"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: What autoapi's inference may parse (besides builtins): this package's packages and its
#: documented modules.
_PARSED = {_module_name(path) for path in PACKAGE.rglob("__init__.py")} | {
    _module_name(PACKAGE / module) for module in PUBLIC_MODULES
}


class _UndocumentedModules(set):  # type: ignore[type-arg]
    """astroid's module deny list, holding every module but the documented ones: autoapi's
    inference would otherwise parse Airflow, pandas, pyarrow, the SDK, the standard library and
    this package's internals (most of a two-minute build) to resolve names that the reference
    shows as written anyway."""

    def __contains__(self, name: object) -> bool:
        return str(name) not in _PARSED and str(name) != "builtins"


# Every AstroidManager (autoapi makes its own) reads the class-wide "brain".
astroid.manager.AstroidManager.brain["module_denylist"] = _UndocumentedModules()
astroid.MANAGER.module_denylist = astroid.manager.AstroidManager.brain["module_denylist"]

# The reference leaves the internal modules out on purpose, so imports of them stay unresolved.
suppress_warnings = ["autoapi.python_import_resolution"]


def _readme_links_to_the_landing_page(app: object, docname: str, source: list[str]) -> None:
    """A page's link to ``../README.md`` (right on GitHub) goes to the landing page here, which
    is the README included."""
    source[0] = source[0].replace("](../README.md", "](index.md")


def setup(app: object) -> None:
    app.connect("source-read", _readme_links_to_the_landing_page)  # type: ignore[attr-defined]
