"""Installing the provider keeps every Airflow process cheap to start and DAG files cheap to
parse: ``import airflow`` and parsing the example DAGs (what a DAG processor does, including
serialization) load none of the heavy libraries a task needs. The SDK, pandas, numpy and
pyarrow load when a task runs: in ``execute``, a trigger's ``run`` or a hook method.

The probe runs in a fresh interpreter (imports are process-wide and cached) and records, for
the first import of each heavy module, the chain of modules and provider functions that
asked for it. A heavy module that Airflow imports on its own is Airflow's cost, not ours: it
fails here only when the chain passes through this provider or an example DAG file. The
time and memory these imports cost are measured by ``benchmarks/p7_import_cost.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = ROOT / "example_dags"

#: What no DAG parse and no ``import airflow`` may load because of this provider: the SDK
#: (about 90 MB), pandas, numpy and pyarrow (which loads numpy). Airflow itself already loads
#: httpx, fsspec, universal_pathlib, pydantic, jinja2 and msgspec, so those cost nothing extra.
HEAVY = (
    "anthropic",
    "pandas",
    "numpy",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.json",
    "pyarrow.csv",
)

PROBE = textwrap.dedent(
    """
    import importlib.abc, json, os, sys

    HEAVY = set(json.loads(sys.argv[1]))
    OURS = ("airflow_provider_claude_batch", "example_dags")
    first = {}

    def where(frame):
        name = frame.f_globals.get("__name__") or "?"
        if name.startswith("unusual_prefix_"):  # how Airflow names a DAG file's module
            name = "example_dags." + os.path.basename(frame.f_code.co_filename)[:-3]
        code = frame.f_code.co_name
        return name if code == "<module>" else f"{name}.{code}()"

    def chain():
        found, frame = [], sys._getframe(2)
        while frame is not None:
            label = where(frame)
            if frame.f_code.co_name == "<module>" or label.startswith(OURS):
                found.append(label)
            frame = frame.f_back
        return found[::-1]

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in HEAVY and name not in first:
                first[name] = chain()
            return None

    sys.meta_path.insert(0, Watch())
    import airflow

    phases = {"import airflow": dict(first)}
    first.clear()
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=sys.argv[2])
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    phases["parse example_dags"] = dict(first)
    print(json.dumps({
        "phases": phases,
        "dags": sorted(bag.dags),
        "errors": bag.import_errors,
        "operators_loaded": "airflow_provider_claude_batch.operators.submit" in sys.modules,
    }))
    """
)


def _probe(airflow_home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "CLAUDE_BATCH_EXAMPLE_DATA": str(airflow_home / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), str(EXAMPLE_DAGS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=airflow_home,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _probe(tmp_path_factory.mktemp("airflow-home"))


def _ours(chain: list[str]) -> bool:
    return any(step.startswith(("airflow_provider_claude_batch", "example_dags")) for step in chain)


def test_the_probe_parsed_every_example_dag_with_the_provider_operators(probed: dict[str, Any]) -> None:
    assert probed["errors"] == {}
    assert probed["dags"] == [
        "claude_batch_invoices",
        "claude_batch_label_report",
        "claude_batch_review_backfill",
        "claude_batch_support_tickets",
    ]
    assert probed["operators_loaded"] is True


@pytest.mark.parametrize("phase", ["import airflow", "parse example_dags"])
def test_no_heavy_module_is_imported_because_of_the_provider(probed: dict[str, Any], phase: str) -> None:
    imported: dict[str, list[str]] = probed["phases"][phase]
    ours = {module: " -> ".join(chain) for module, chain in imported.items() if _ours(chain)}
    assert ours == {}, f"{phase} imported heavy modules (module: importer chain):\n" + "\n".join(
        f"  {module}: {chain}" for module, chain in sorted(ours.items())
    )
