"""P7: what installing the provider adds to ``import airflow`` and to parsing a DAG file.

Every Airflow process imports ``airflow`` (which calls each installed provider's
``get_provider_info``), and a DAG processor parses every DAG file again and again. Each case
is a fresh interpreter that times ``import airflow``, then parses one DAG file as a DAG
processor does (``DagBag`` of the file, then ``DagSerialization.to_dict`` of each DAG), and
reports wall and CPU seconds and resident memory (``VmRSS``) after each step.

The alternative is the same interpreter with the provider's distribution hidden from
``importlib.metadata`` before Airflow looks for providers: Airflow then finds no entry point
of ours, exactly as if the package were not installed (nothing else differs: same venv, same
files, same caches). Its DAG file has the same shape as the example (three tasks in a chain)
built from Airflow's own ``EmptyOperator``, since a DAG using our operators cannot be parsed
without them.

    python -m benchmarks.p7_import_cost with|without DAG_FILE   (one measured process)
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Series, repeat, run_case

DISTRIBUTION = "airflow-provider-claude-batch"

#: The alternative's DAG file: the example's shape with Airflow's own operators.
PLAIN_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="plain_three_tasks", schedule="@daily", start_date=datetime(2026, 11, 1), catchup=False):
    EmptyOperator(task_id="submit") >> EmptyOperator(task_id="wait") >> EmptyOperator(task_id="land")
"""


def hide_the_provider() -> None:
    """Airflow finds providers through ``importlib.metadata`` (``importlib_metadata`` on 3.11):
    leave our distribution out of both, before Airflow is imported."""
    import importlib.metadata

    import importlib_metadata

    for module in (importlib.metadata, importlib_metadata):
        everything = module.distributions

        def others(*args: object, _everything=everything, **kwargs: object):  # type: ignore[no-untyped-def]
            for dist in _everything(*args, **kwargs):
                if (dist.metadata["Name"] or "").lower().replace("_", "-") != DISTRIBUTION:
                    yield dist

        module.distributions = others  # type: ignore[assignment]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(mode: str, dag_file: str) -> dict[str, float]:
    if mode == "without":
        hide_the_provider()
    start, cpu = time.perf_counter(), time.process_time()
    import airflow  # noqa: F401

    result = {
        "import_seconds": time.perf_counter() - start,
        "import_cpu_seconds": time.process_time() - cpu,
        "import_rss_mb": rss_mb(),
    }
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    start, cpu = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=dag_file)
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    if bag.import_errors or not bag.dags:
        raise SystemExit(f"{dag_file} did not parse: {bag.import_errors}")
    result |= {
        "parse_seconds": time.perf_counter() - start,
        "parse_cpu_seconds": time.process_time() - cpu,
        "parse_rss_mb": rss_mb(),
        "provider_loaded": float("airflow_provider_claude_batch.get_provider_info" in sys.modules),
    }
    return result


CASES = {
    "Airflow alone, a DAG of EmptyOperators": ("without", "plain"),
    "with the provider, the same DAG": ("with", "plain"),
    "with the provider, example_dags/claude_batch_support_tickets.py": ("with", "example"),
}


def bench(runs: int, tmp: Path, *, package_root: Path | None = None) -> dict[str, Series]:
    """Each case ``runs`` times, each run a fresh interpreter with an empty ``AIRFLOW_HOME``.
    ``package_root``: import the provider from there instead (to measure an older checkout)."""
    plain = tmp / "p7-plain" / "plain_three_tasks.py"
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(PLAIN_DAG)
    example = ROOT / "example_dags" / "claude_batch_support_tickets.py"
    results = {}
    for name, (mode, dag) in CASES.items():
        home = tmp / f"p7-home-{mode}-{dag}"
        home.mkdir(exist_ok=True)
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "CLAUDE_BATCH_EXAMPLE_DATA": str(home / "data"),
        }
        path = str(plain if dag == "plain" else example)
        results[name] = repeat(name, runs, functools.partial(_case, mode, path, env, package_root))
    return results


def _case(mode: str, dag_file: str, env: dict[str, str], package_root: Path | None) -> dict[str, Any]:
    """One measured process. With ``package_root`` it runs there (``-m`` puts the working folder
    first on ``sys.path``, so the provider comes from there), with this checkout's benchmarks after."""
    if package_root is None:
        return run_case("benchmarks.p7_import_cost", mode, dag_file, env=env)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.p7_import_cost", mode, dag_file],
        cwd=package_root,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1][len("RESULT ") :]))


def added(series: dict[str, Series]) -> dict[str, float]:
    """The provider's added cost (medians): at start, and at parse for a DAG that uses it."""
    alone, plain, example = (series[name] for name in CASES)
    return {
        "start_seconds": plain.median("import_seconds") - alone.median("import_seconds"),
        "start_cpu_seconds": plain.median("import_cpu_seconds") - alone.median("import_cpu_seconds"),
        "start_rss_mb": plain.median("import_rss_mb") - alone.median("import_rss_mb"),
        "parse_seconds": example.median("parse_seconds") - alone.median("parse_seconds"),
        "parse_cpu_seconds": example.median("parse_cpu_seconds") - alone.median("parse_cpu_seconds"),
        "parse_rss_mb": (example.median("parse_rss_mb") - example.median("import_rss_mb"))
        - (alone.median("parse_rss_mb") - alone.median("import_rss_mb")),
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(measure(sys.argv[1], sys.argv[2])), flush=True)
