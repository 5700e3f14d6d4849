"""The supported Airflow range, refused outside at import, and capabilities a minor lacks said
once as a warning that names the minor.

Other minors are faked by setting ``airflow.__version__`` in a fresh interpreter before the
provider is imported: what the check reads. The real minors run in ``scripts/smoke_deps.py``."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from airflow_provider_claude_batch import compat
from airflow_provider_claude_batch.exceptions import ClaudeBatchUnsupportedAirflowError


@pytest.mark.parametrize("version", ["3.0.6", "3.1.8", "3.2.2", "3.3.2", "3.3.9+astro.1"])
def test_every_tested_minor_is_accepted(version: str) -> None:
    assert compat.check_supported(version)[:2] in {(3, 0), (3, 1), (3, 2), (3, 3)}


@pytest.mark.parametrize("version", ["2.10.5", "2.11.0", "3.0.0", "3.4.0", "3.4.0.dev0", "4.0.0", "nightly"])
def test_a_version_outside_the_range_is_refused_naming_both(version: str) -> None:
    with pytest.raises(ClaudeBatchUnsupportedAirflowError) as raised:
        compat.check_supported(version)
    message = str(raised.value)
    assert f"the installed Apache Airflow is {version}" in message
    assert compat.SUPPORTED_AIRFLOW in message


def _import_with_airflow(version: str, code: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        f"""
        import airflow
        airflow.__version__ = {version!r}
        """
    ) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120)


def test_importing_the_operators_on_an_unsupported_airflow_fails_clearly() -> None:
    done = _import_with_airflow("2.11.0", "import airflow_provider_claude_batch.operators.submit")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("airflow_provider_claude_batch.exceptions.ClaudeBatchUnsupportedAirflowError:"), last
    assert "the installed Apache Airflow is 2.11.0" in last
    assert ">=3.0.6,<3.4" in last


def test_a_trigger_warns_once_that_a_killed_deferred_wait_is_not_cancelled_before_3_3() -> None:
    code = """
        from airflow_provider_claude_batch import compat
        from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger
        assert not compat.TRIGGER_ON_KILL and compat.PLUGIN_MENU_ENTRY
        ClaudeBatchTrigger(["msgbatch_1"])
        ClaudeBatchTrigger(["msgbatch_2"])
        ClaudeBatchTrigger(["msgbatch_3"], cancel_on_kill=False)
        """
    done = _import_with_airflow("3.1.8", code)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "lacks a trigger's on_kill" in line]
    assert len(warnings) == 1, (done.stdout + done.stderr)[-3000:]
    assert "Airflow 3.1 (3.1.8)" in warnings[0]
    assert "does not cancel its batches" in warnings[0]


def test_the_page_warns_on_3_0_that_it_has_no_menu_entry() -> None:
    code = """
        from airflow_provider_claude_batch.plugins.batches_page import ClaudeBatchesPlugin
        assert ClaudeBatchesPlugin.fastapi_apps  # still served
        """
    done = _import_with_airflow("3.0.6", code)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "lacks plugin menu entries" in line]
    assert len(warnings) == 1, (done.stdout + done.stderr)[-3000:]
    assert "Airflow 3.0 (3.0.6)" in warnings[0] and "/claude-batches/" in warnings[0]


def test_on_the_installed_minor_nothing_is_degraded(caplog: pytest.LogCaptureFixture) -> None:
    if compat.AIRFLOW_VERSION[:2] != (3, 3):
        pytest.skip("the locked suite runs Airflow 3.3")
    assert compat.TRIGGER_ON_KILL and compat.PLUGIN_MENU_ENTRY
    with caplog.at_level(logging.WARNING):
        compat.warn_degraded("a capability for this test", "nothing, really")
        compat.warn_degraded("a capability for this test", "nothing, really")
    assert [r.getMessage() for r in caplog.records].count(
        f"Airflow 3.3 ({compat.AIRFLOW_VERSION_STRING}) lacks a capability for this test: nothing, really"
    ) == 1
