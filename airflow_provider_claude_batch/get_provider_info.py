"""The ``apache_airflow_provider`` entry point: what Airflow learns about this provider.

Airflow calls it in every process that imports ``airflow``, so it imports plain data only
(``config_options``, the version): never the SDK, pyarrow or pandas
(``tests/unit/test_get_provider_info.py`` checks it in a fresh interpreter)."""

from __future__ import annotations

from typing import Any

from airflow_provider_claude_batch import __version__
from airflow_provider_claude_batch.config_options import OPTIONS, SECTION

_PACKAGE = "airflow_provider_claude_batch"
_INTEGRATION = "Claude Message Batches"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-claude-batch",
        "name": "Claude Message Batches",
        "description": "Run Claude's Message Batches API at scale: chunked submit, deferrable waits, "
        "results streamed to Parquet, retry-safe and backfill-safe.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.anthropic.com/en/docs/build-with-claude/batch-processing",
                "tags": ["ai"],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.hooks.claude_batch"]}],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    f"{_PACKAGE}.operators.submit",
                    f"{_PACKAGE}.operators.compact_answers",
                    f"{_PACKAGE}.operators.delete_files",
                ],
            }
        ],
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.sensors.batch"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.triggers.batch"]}],
        "transfers": [
            {
                "source-integration-name": _INTEGRATION,
                "target-integration-name": "Apache Parquet",
                "python-module": f"{_PACKAGE}.transfers.batch_to_parquet",
            }
        ],
        "task-decorators": [
            {"name": "claude_batch", "class-name": f"{_PACKAGE}.decorators.claude_batch.claude_batch_task"}
        ],
        # Also an ``airflow.plugins`` entry point (pyproject), which is what loads it while providers
        # are discovered lazily (the default); listed here as providers list theirs.
        "plugins": [{"name": "claude_batches", "plugin-class": f"{_PACKAGE}.plugins.batches_page.ClaudeBatchesPlugin"}],
        "extra-links": [
            f"{_PACKAGE}.links.ClaudeBatchConsoleLink",
            f"{_PACKAGE}.links.ClaudeBatchesPageLink",
            f"{_PACKAGE}.links.ClaudeBatchOutputLink",
        ],
        "config": {
            SECTION: {
                "description": "Claude Message Batches: where runs keep their state, prices, triggerer load.",
                "options": OPTIONS,
            }
        },
        "connection-types": [
            {
                "connection-type": "claude_batch",
                "hook-class-name": f"{_PACKAGE}.hooks.claude_batch.ClaudeBatchHook",
                "hook-name": "Claude Message Batches",
                "conn-fields": {
                    "workspace_id": {
                        "label": "Workspace ID",
                        "schema": {"type": ["string", "null"]},
                        "description": "Sent as anthropic-workspace-id; only for keys that act on several workspaces.",
                    },
                    "default_model": {"label": "Default model", "schema": {"type": ["string", "null"]}},
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 600},
                    },
                    "max_retries": {
                        "label": "Retries of safe calls",
                        "schema": {"type": ["integer", "null"], "default": 2},
                        "description": "Reads and cancels only: creates are never blindly retried.",
                    },
                    "anthropic_beta": {"label": "anthropic-beta header", "schema": {"type": ["string", "null"]}},
                    "console_url_template": {
                        "label": "Console URL template for a batch",
                        "schema": {"type": ["string", "null"]},
                        "description": "Extra link URL; fields {batch_id} and {workspace_id}. Default: "
                        "https://console.anthropic.com/workspaces/{workspace_id}/batches/{batch_id}",
                    },
                    "queue_limit": {
                        "label": "Batch queue limit (requests)",
                        "schema": {"type": ["integer", "null"]},
                        "description": "The organisation's batch queue: submits send chunks while they fit and "
                        "wait for room. Empty: [claude_batch] queue_limit, else learned from refusals.",
                    },
                    # Keyless: workload identity federation (leave the API key empty). None is a secret.
                    "federation_rule_id": {
                        "label": "Federation rule ID (keyless)",
                        "schema": {"type": ["string", "null"]},
                        "description": "Workload identity federation instead of an API key: the rule that "
                        "trusts this deployment's identity tokens.",
                    },
                    "organization_id": {
                        "label": "Organization ID (keyless)",
                        "schema": {"type": ["string", "null"]},
                        "description": "The organization's UUID; needed with a federation rule.",
                    },
                    "service_account_id": {
                        "label": "Service account ID (keyless, optional)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "identity_token_file": {
                        "label": "Identity token file (keyless)",
                        "schema": {"type": ["string", "null"]},
                        "description": "Path of the OIDC token the platform rotates, e.g. a Kubernetes projected "
                        "service account token. Default: $ANTHROPIC_IDENTITY_TOKEN_FILE.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {
                        "host": "Base URL (optional)",
                        "password": "API key (empty with workload identity federation)",
                    },
                    "placeholders": {"host": "https://api.anthropic.com"},
                },
            }
        ],
    }
