#!/usr/bin/env python3
"""Prove both ends of the declared dependency ranges: install the provider without the lock
into a fresh virtualenv at the **lowest** versions ``pyproject.toml`` allows (uv's
``lowest-direct`` resolution: every direct dependency at its lower bound) and at the
**newest**, and run a smoke in each:

1. import every module of the provider;
2. ``airflow providers list`` shows the package, and ``airflow providers get`` its name;
3. the example DAG end to end on the local emulator with ``dag.test()`` (submit, deferred
   wait, Parquet with one row per ticket).

The locked test suite proves the code; this proves the ranges users install from. A lower
bound that cannot be picked, or a version the code does not work with, fails here.

    python3 dev.py smoke-deps                 # both ends
    python3 dev.py smoke-deps lowest          # one end
    python3 dev.py smoke-deps lowest --with 'anthropic==1.2.0'   # probe below a bound
    python3 scripts/smoke_deps.py --uv PATH   # without dev.py (uv on PATH otherwise)

Virtualenvs live in ``.smoke/<end>/`` and are rebuilt every run (uv's cache keeps it fast).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOLUTIONS = {"lowest": "lowest-direct", "newest": "highest"}
#: Printed for each end, so a CI log says which versions were proven.
REPORTED = (
    "apache-airflow",
    "anthropic",
    "pandas",
    "pyarrow",
    "numpy",
    "msgspec",
    "httpx",
    "fastapi",
    "uvicorn",
    "starlette",
    "sqlalchemy",
)
ROWS = 300
PLUGIN_CLASS = "airflow_provider_claude_batch.plugins.batches_page.ClaudeBatchesPlugin"


def _run(*args: str | Path, env: dict[str, str] | None = None, capture: bool = False) -> str:
    result = subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env, text=True, capture_output=capture)
    return result.stdout if capture else ""


def build(end: str, uv: str, python: str, pins: list[str]) -> Path:
    """A fresh virtualenv with the provider installed at one end of its ranges (and ``pins``)."""
    venv = ROOT / ".smoke" / end
    _run(uv, "venv", "--quiet", "--clear", "--python", python, venv)
    py = venv / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--python", py, "--resolution", RESOLUTIONS[end], ROOT]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as overrides:
        # Overrides, not requirements: a probe below a declared bound must win over that bound.
        overrides.write("\n".join(pins))
        overrides.flush()
        _run(*install, *(["--override", overrides.name] if pins else []))
    frozen = _run(uv, "pip", "freeze", "--python", py, capture=True)
    versions = {line.split("==")[0].lower(): line.split("==")[1] for line in frozen.splitlines() if "==" in line}
    print(f"[{end}] " + ", ".join(f"{name} {versions.get(name, '?')}" for name in REPORTED), flush=True)
    return py


def smoke(end: str, py: Path) -> None:
    """Run this script's ``--check`` inside the virtualenv, with a throwaway AIRFLOW_HOME."""
    with tempfile.TemporaryDirectory(prefix=f"claude-batch-smoke-{end}-") as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "CLAUDE_BATCH_EXAMPLE_DATA": str(Path(home) / "lake"),
            "CLAUDE_BATCH_EXAMPLE_POLL_SECONDS": "0.5",
            "AIRFLOW__CLAUDE_BATCH__WORK_DIR": str(Path(home) / "work"),
        }
        env.pop("ANTHROPIC_API_KEY", None)
        env.pop("PYTHONPATH", None)
        # Run from the home folder so that the checkout is not importable: the installed wheel is tested.
        subprocess.run([str(py), str(Path(__file__).resolve()), "--check"], check=True, cwd=home, env=env)


# --------------------------------------------------------------------------- inside the venv
def check() -> None:
    started = time.monotonic()
    import importlib
    import pkgutil

    import airflow_provider_claude_batch as provider

    assert "site-packages" in Path(provider.__file__).parts, f"imported the checkout: {provider.__file__}"
    for module in pkgutil.walk_packages(provider.__path__, f"{provider.__name__}."):
        if not module.name.endswith(".pytest_plugin"):  # loaded by pytest only, which brings its own
            importlib.import_module(module.name)
    print(f"  imported {provider.__name__} {provider.__version__}", flush=True)

    airflow = Path(sys.executable).parent / "airflow"
    listed = json.loads(
        subprocess.run([airflow, "providers", "list", "-o", "json"], check=True, capture_output=True, text=True).stdout
    )
    names = {row["package_name"] for row in listed}
    assert "airflow-provider-claude-batch" in names, (
        f"airflow providers list does not show the provider: {sorted(names)}"
    )
    got = subprocess.run(
        [airflow, "providers", "get", "airflow-provider-claude-batch", "--full", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (info,) = json.loads(got)
    assert info["name"] == "Claude Message Batches", info
    assert [p["plugin-class"] for p in info.get("plugins") or []] == [PLUGIN_CLASS], info.get("plugins")
    print(
        f"  airflow providers list/get show the provider and its plugin ({time.monotonic() - started:.0f} s)",
        flush=True,
    )

    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)
    print(f"  airflow db migrate ({time.monotonic() - started:.0f} s)", flush=True)
    _example_dag_on_emulator()
    print(f"  example DAG ({time.monotonic() - started:.0f} s)", flush=True)


def _example_dag_on_emulator() -> None:
    from datetime import datetime, timezone

    import pyarrow.dataset as ds

    from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator

    running = start_emulator(EmulatorConfig(processing_seconds=1.0))
    try:
        os.environ["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"] = json.dumps(
            {"conn_type": "claude_batch", "host": running.base_url, "password": running.api_key}
        )
        sys.path.insert(0, str(ROOT / "example_dags"))
        from airflow.dag_processing.dagbag import DagBag
        from example_data import write_tickets  # type: ignore[import-not-found]

        lake = Path(os.environ["CLAUDE_BATCH_EXAMPLE_DATA"])
        write_tickets(lake, "2026-11-01", ROWS)
        bag = DagBag(dag_folder=str(ROOT / "example_dags" / "claude_batch_support_tickets.py"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag("claude_batch_support_tickets")
        when = datetime(2026, 11, 1, tzinfo=timezone.utc)
        dag_run = dag.test(logical_date=when, run_after=when)
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        assert states == {"submit": "success", "wait": "success", "land": "success"}, states
        table = ds.dataset(lake / "support" / "ticket_labels" / "ds=2026-11-01", format="parquet").to_table()
        assert table.num_rows == ROWS, table.num_rows
        assert sorted(table.column("custom_id").to_pylist()) == sorted(table.column("ticket_id").to_pylist())
        assert running.emulator.stats["batches_created"] >= 1
        print(f"  example DAG on the emulator: {table.num_rows} rows landed", flush=True)
    finally:
        running.stop()


# --------------------------------------------------------------------------- entry point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ends", nargs="*", choices=[*RESOLUTIONS, []], help="lowest, newest (default: both)")
    parser.add_argument("--uv", default=shutil.which("uv"), help="the uv executable")
    parser.add_argument("--python", default="3.11", help="interpreter for the virtualenvs (uv --python)")
    parser.add_argument(
        "--with",
        dest="pins",
        action="append",
        default=[],
        metavar="REQ",
        help="force a version (uv --override), to probe outside the declared range: --with 'anthropic==1.2.0'",
    )
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        check()
        return 0
    if not args.uv:
        parser.error("uv not found: pass --uv or run `python3 dev.py smoke-deps`")
    ends = args.ends or list(RESOLUTIONS)
    built: dict[str, tuple[Path, float]] = {}
    for end in ends:  # installs one after the other: they share uv's cache
        started = time.monotonic()
        built[end] = (build(end, args.uv, args.python, args.pins), time.monotonic() - started)

    def run(end: str) -> str:
        py, install_seconds = built[end]
        started = time.monotonic()
        smoke(end, py)
        return f"[{end}] ok: install {install_seconds:.0f} s, smoke {time.monotonic() - started:.0f} s"

    # The smokes run side by side: each is mostly an airflow CLI process waiting on its own start.
    with ThreadPoolExecutor(max_workers=len(ends)) as pool:
        for line in pool.map(run, ends):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
