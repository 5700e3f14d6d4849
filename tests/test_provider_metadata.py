"""What Airflow learns about the provider: its plugin, and extra links that open."""

from __future__ import annotations

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
