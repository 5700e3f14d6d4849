"""What Airflow learns about the provider: its plugin, and extra links that open."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from airflow_provider_claude_batch.get_provider_info import get_provider_info
from airflow_provider_claude_batch.links import console_url, output_url


def test_the_page_plugin_is_registered_as_providers_register_theirs() -> None:
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_claude_batch.plugins.batches_page import ClaudeBatchesPlugin

    assert get_provider_info()["plugins"] == [
        {"name": ClaudeBatchesPlugin.name, "plugin-class": f"{ClaudeBatchesPlugin.__module__}.ClaudeBatchesPlugin"}
    ]
    manager = ProvidersManager()
    manager.initialize_providers_plugins()
    (plugin,) = [p for p in manager.plugins if p.provider_name == "airflow-provider-claude-batch"]
    assert (plugin.name, plugin.plugin_class) == (
        "claude_batches",
        f"{ClaudeBatchesPlugin.__module__}.ClaudeBatchesPlugin",
    )


def test_output_links_open_in_a_browser_or_are_absent() -> None:
    assert output_url("/data/lake/labels/ds=2026-11-01") is None
    assert output_url("file:///data/lake/labels/") is None
    assert output_url("s3://aws_default@lake/support/labels/ds=2026-11-01") == (
        "https://s3.console.aws.amazon.com/s3/buckets/lake?prefix=support%2Flabels%2Fds%3D2026-11-01%2F"
    )
    assert output_url("gs://lake/labels/ds=2026-11-01/") == (
        "https://console.cloud.google.com/storage/browser/lake/labels/ds=2026-11-01"
    )


def test_the_console_link_is_for_batches_of_the_real_api_only() -> None:
    real = "https://console.anthropic.com/workspaces/default/batches/msgbatch_1"
    assert console_url(None, "msgbatch_1") == real
    assert console_url(None, "msgbatch_1", base_url="https://api.anthropic.com") == real
    assert console_url(None, "msgbatch_1", base_url="http://127.0.0.1:8765") is None
    # A template set on the connection is the user's choice, whatever the host.
    assert (
        console_url("https://gw/{batch_id}", "msgbatch_1", base_url="http://127.0.0.1:8765") == "https://gw/msgbatch_1"
    )


def test_airflow_providers_commands_show_what_the_readme_says() -> None:
    """``airflow providers hooks`` and ``airflow providers links`` print these registries."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["claude_batch"]
    assert hook is not None
    assert (hook.hook_class_name, hook.connection_id_attribute_name, hook.package_name) == (
        "airflow_provider_claude_batch.hooks.claude_batch.ClaudeBatchHook",
        "claude_batch_conn_id",
        "airflow-provider-claude-batch",
    )
    assert {name for name in manager.extra_links_class_names if "claude" in name.lower()} == {
        f"airflow_provider_claude_batch.links.{name}"
        for name in ("ClaudeBatchConsoleLink", "ClaudeBatchesPageLink", "ClaudeBatchOutputLink")
    }
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for command in ("airflow providers list", "airflow providers hooks", "airflow providers links"):
        assert command in readme


#: Imported only where their package is present: OpenLineage's client when the OpenLineage
#: provider calls the lineage hook, ``httpx2`` (anthropic >= 2's fork) before ``httpx``, and
#: pytest by the pytest plugin pytest itself loads.
OPTIONAL_IMPORTS = {"openlineage", "httpx2", "pytest"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_declares_every_package_the_code_imports() -> None:
    """Every third-party module imported anywhere in the package (at any depth, also inside
    functions) comes from a distribution ``pyproject.toml`` declares, so an install without the
    lock cannot miss one that Airflow happens to bring today."""
    import ast
    import importlib.metadata

    import tomllib

    root = Path(__file__).resolve().parents[2]
    package = root / "airflow_provider_claude_batch"
    imported: dict[str, str] = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(root)))
    third_party = {
        name: where
        for name, where in imported.items()
        if name not in sys.stdlib_module_names and name not in {"airflow_provider_claude_batch", *OPTIONAL_IMPORTS}
    }
    declared = {
        _canonical(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0])
        for spec in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    # ``airflow`` comes from apache-airflow-core and -task-sdk, which the declared apache-airflow pins.
    distributions = {**importlib.metadata.packages_distributions(), "airflow": ["apache-airflow"]}
    undeclared = {
        name: where
        for name, where in third_party.items()
        if not declared & {_canonical(d) for d in distributions.get(name, [name])}
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert {"anthropic", "msgspec", "numpy", "upath", "fastapi", "starlette", "sqlalchemy"} <= set(third_party)
