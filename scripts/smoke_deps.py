#!/usr/bin/env python3
"""Prove the declared ranges as users install them: build the sdist and the wheel once, check
them, install the **wheel** (not the checkout) into fresh virtualenvs and run a real smoke in
each.

The virtualenvs (``python3 dev.py smoke-deps [NAME ...]``, all by default):

* ``lowest``: every direct dependency at its lower bound (uv's ``lowest-direct``: Airflow
  3.0.0, pandas 2.0, ...) on the lowest Python ``requires-python`` allows;
* ``newest``: the newest versions allowed, on the newest Python allowed;
* ``3.0``, ``3.1``, ``3.2``, ``3.3``: each Airflow minor at its newest patch release
  (:data:`MINORS`), everything else resolved as pip would.

Before any install: ``uv build`` (the wheel is built from the sdist, so a file missing from the
sdist fails here), ``twine check`` (metadata and README render), and the files: the wheel holds
every file of the package (templates, static files, ``py.typed``, the emulator) and no tests;
the sdist holds the tests, the docs and the example DAGs.

The smoke, inside each virtualenv, run from a folder where the checkout is not importable:

1. import every module of the provider (from site-packages);
2. Airflow's providers manager lists the package and its plugin; ``airflow db migrate``;
3. the example DAG with ``dag.test()`` on the local emulator: submit, the wait deferred through
   the trigger, Parquet with one row per ticket, checked by ``custom_id``;
4. ``@task.claude_batch`` with an ``output_schema``: typed columns, every answer valid; run
   again for another date with the same rows: answers reused, the emulator creates 0 batches;
5. the Claude Batches page: its plugin imported, its JSON route answered with every batch the
   emulator made and the example's DAG run landed.

    python3 dev.py smoke-deps                  # all six
    python3 dev.py smoke-deps 3.0              # one
    python3 dev.py smoke-deps lowest --with 'anthropic==1.2.0'   # probe below a bound
    python3 scripts/smoke_deps.py --uv PATH    # without dev.py (uv on PATH otherwise)

Virtualenvs live in ``.smoke/<name>/`` and are rebuilt every run (uv's cache keeps it fast).
Each prints the versions it proved and the time it took.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / ".smoke"
PACKAGE = "airflow_provider_claude_batch"
DISTRIBUTION = "airflow-provider-claude-batch"


@dataclass(frozen=True)
class Target:
    """One virtualenv: how uv resolves it, on which Python, with which pins (``--override``:
    they win over any requirement) and constraints (``--constraint``: the resolver honours
    them while it picks the rest)."""

    resolution: str
    python: str
    pins: tuple[str, ...] = field(default=())
    constraints: tuple[str, ...] = field(default=())


#: Each Airflow minor at its newest patch release: what the compatibility page lists.
MINORS = {"3.0": "3.0.6", "3.1": "3.1.8", "3.2": "3.2.2", "3.3": "3.3.2"}
#: The ends of ``requires-python`` (3.11 and 3.13) run the dependency ends; 3.0 runs on 3.12,
#: the newest Python it supports (and what managed services run it on), the rest on 3.11.
TARGETS: dict[str, Target] = {
    "lowest": Target("lowest-direct", "3.11"),
    "newest": Target("highest", "3.13"),
    # Airflow 3.0 sets no upper bound on FastAPI, but its execution API refuses a task's start
    # with the FastAPI and cadwyn releases made for 3.2 and later: constrained as Airflow's own
    # constraints for 3.0 do (docs/compatibility.md).
    "3.0": Target("highest", "3.12", (f"apache-airflow=={MINORS['3.0']}",), ("fastapi<0.118",)),
    "3.1": Target("highest", "3.11", (f"apache-airflow=={MINORS['3.1']}",)),
    # Airflow 3.2's dag.test() drops the in-process execution API whose lifespan it started, and
    # svcs 26.2 then detaches the API's service registry ('State' object has no attribute
    # 'svcs_registry': no task starts): constrained below 26.2 (docs/compatibility.md).
    "3.2": Target("highest", "3.11", (f"apache-airflow=={MINORS['3.2']}",), ("svcs<26.2",)),
    "3.3": Target("highest", "3.11", (f"apache-airflow=={MINORS['3.3']}",)),
}
#: Run only when named: none today.
UNSUPPORTED: tuple[str, ...] = ()
#: Printed for each virtualenv, so a CI log says which versions were proven.
REPORTED = (
    "apache-airflow",
    "apache-airflow-providers-common-compat",
    "anthropic",
    "pandas",
    "pyarrow",
    "numpy",
    "fastapi",
    "starlette",
    "sqlalchemy",
    "pydantic",
    "universal-pathlib",
    "svcs",
)
ROWS = 300
TYPED_ROWS = 40
PLUGIN_CLASS = f"{PACKAGE}.plugins.batches_page.ClaudeBatchesPlugin"
#: Smokes at once: each is mostly one Python process at full speed, and CI has two cores.
SMOKE_PARALLELISM = 2


def _run(*args: str | Path, env: dict[str, str] | None = None, capture: bool = False, cwd: Path = ROOT) -> str:
    result = subprocess.run([str(a) for a in args], check=True, cwd=cwd, env=env, text=True, capture_output=capture)
    return result.stdout if capture else ""


# --------------------------------------------------------------------------- build and check
def build_dists(uv: str) -> Path:
    """``uv build`` once (sdist, then the wheel from the sdist); ``twine check``; the files."""
    dist = SMOKE / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _run(uv, "build", "--quiet", "--out-dir", dist, ROOT)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    _run(uv, "tool", "run", "--quiet", "--from", "twine", "twine", "check", "--strict", wheel, sdist)
    check_wheel_files(wheel)
    check_sdist_files(sdist)
    print(f"[dist] {wheel.name} and {sdist.name}: twine check passed, package data and tests where they belong")
    return wheel


def _package_files() -> set[str]:
    """Every file of the package in the checkout, as the wheel names it (no bytecode)."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def check_wheel_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_package_files() - names)
    assert not missing, f"the wheel lacks files of the package (package data?): {missing[:20]}"
    for needed in (
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/plugins/templates/page.html.j2",
        f"{PACKAGE}/testing/__init__.py",
    ):
        assert needed in names, f"the wheel lacks {needed}"
    tests = sorted(name for name in names if name.startswith("tests/") or "/tests/" in name)
    assert not tests, f"the wheel holds tests: {tests[:10]}"


def check_sdist_files(sdist: Path) -> None:
    import tarfile

    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("tests/unit/test_compat.py", "tests/conftest.py", "docs/compatibility.md", "example_dags"):
        assert any(name == needed or name.startswith(needed + "/") for name in names), f"the sdist lacks {needed}"
    assert f"{PACKAGE}/py.typed" in names


# --------------------------------------------------------------------------- virtualenvs
def build_venv(name: str, uv: str, wheel: Path, extra_pins: list[str]) -> Path:
    """A fresh virtualenv with the wheel installed as ``TARGETS[name]`` says (and ``extra_pins``)."""
    target = TARGETS[name]
    venv = SMOKE / name
    _run(uv, "venv", "--quiet", "--clear", "--python", find_python(target.python), venv)
    py = venv / "bin" / "python"
    pins = [*target.pins, *extra_pins]
    # The declared dependencies are named beside the wheel: uv's lowest-direct resolution lowers
    # only requirements given on its command line, not those of a wheel it installs.
    install = [uv, "pip", "install", "--quiet", "--python", py, "--resolution", target.resolution, wheel, *_declared()]
    with (
        tempfile.NamedTemporaryFile("w", suffix=".txt") as overrides,
        tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints,
    ):
        # Overrides, not requirements: a probe below a declared bound must win over that bound.
        overrides.write("\n".join(pins))
        overrides.flush()
        constraints.write("\n".join(target.constraints))
        constraints.flush()
        _run(
            *install,
            *(["--override", overrides.name] if pins else []),
            *(["--constraint", constraints.name] if target.constraints else []),
        )
    return py


def _declared() -> list[str]:
    import tomllib

    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def find_python(version: str) -> str:
    """An interpreter of ``version`` for ``uv venv``: one uv finds (PATH, its own), else one
    of pyenv's installed versions (whose shims answer only for the selected version)."""
    found = subprocess.run(["uv", "python", "find", version], capture_output=True, text=True, check=False)
    if found.returncode == 0:
        return found.stdout.strip()
    pyenv = shutil.which("pyenv")
    if pyenv:
        versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False).stdout
        matching = [v.strip() for v in versions.splitlines() if v.strip().startswith(version + ".")]
        if matching:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=True).stdout.strip()
            return str(Path(root) / "versions" / max(matching, key=_release) / "bin" / "python")
    return version  # uv's own discovery, with its own error if none is found


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def versions_line(name: str, py: Path, uv: str) -> str:
    frozen = _run(uv, "pip", "freeze", "--python", py, capture=True)
    versions = {line.split("==")[0].lower(): line.split("==")[1] for line in frozen.splitlines() if "==" in line}
    python = _run(py, "-c", "import platform; print(platform.python_version())", capture=True).strip()
    return f"[{name}] Python {python}, " + ", ".join(f"{n} {versions.get(n, '?')}" for n in REPORTED)


def smoke(name: str, py: Path) -> None:
    """Run this script's ``--check`` inside the virtualenv, with a throwaway AIRFLOW_HOME that
    holds copies of the example DAGs (the checkout is neither the working folder nor on the path)."""
    with tempfile.TemporaryDirectory(prefix=f"claude-batch-smoke-{name}-") as home:
        dags = Path(home) / "dags"
        shutil.copytree(ROOT / "example_dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "CLAUDE_BATCH_EXAMPLE_DATA": str(Path(home) / "lake"),
            "CLAUDE_BATCH_EXAMPLE_POLL_SECONDS": "0.5",
            "AIRFLOW__CLAUDE_BATCH__WORK_DIR": str(Path(home) / "work"),
            # dag.test() runs the triggers itself: no triggerer check (another deployment on this
            # machine's port 8080 would answer it).
            "AIRFLOW__CLAUDE_BATCH__TRIGGERER": "yes",
            # Airflow 3.0 to 3.2's execution API signs task tokens with it (3.3 makes one up).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        }
        env.pop("ANTHROPIC_API_KEY", None)
        env.pop("PYTHONPATH", None)
        script = Path(home) / "smoke_check.py"
        shutil.copy(Path(__file__).resolve(), script)
        subprocess.run([str(py), str(script), "--check"], check=True, cwd=home, env=env)


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
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    manager.initialize_providers_plugins()
    assert DISTRIBUTION in manager.providers, sorted(manager.providers)
    plugins = [p.plugin_class for p in manager.plugins if p.provider_name == DISTRIBUTION]
    assert plugins == [PLUGIN_CLASS], plugins
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)
    print(f"  imported, provider and plugin registered, db migrated ({time.monotonic() - started:.0f} s)", flush=True)

    from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator

    _wait_for_in_process_api()
    # Batches take 4 s: still open when the sensor first looks, so every wait defers to the trigger.
    running = start_emulator(EmulatorConfig(processing_seconds=4.0))
    try:
        os.environ["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"] = json.dumps(
            {"conn_type": "claude_batch", "host": running.base_url, "password": running.api_key}
        )
        _example_dag(running)
        print(f"  example DAG: {ROWS} rows landed by custom_id ({time.monotonic() - started:.0f} s)", flush=True)
        _decorator_typed_and_reused(running)
        print(f"  @task.claude_batch typed, rerun reused ({time.monotonic() - started:.0f} s)", flush=True)
        _page_json(running)
        print(f"  Claude Batches page JSON ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        running.stop()


def _wait_for_in_process_api() -> None:
    """``dag.test()`` on Airflow 3.0 to 3.2 starts its in-process execution API's lifespan
    (``start_lifespan``, scheduled with ``asyncio.run_coroutine_threadsafe``) without waiting
    for it, so on a busy machine a task's first call can reach the API before its service
    registry exists (``'State' object has no attribute 'svcs_registry'``) and the task fails.
    Airflow 3.3 waits for that future; here the older minors wait too. A race of Airflow's test
    harness, not of the provider: an api-server runs its lifespan before it serves."""
    import asyncio

    schedule = asyncio.run_coroutine_threadsafe

    def schedule_and_wait_for_lifespan(coro, loop):  # type: ignore[no-untyped-def]
        future = schedule(coro, loop)
        if getattr(coro, "__name__", "") == "start_lifespan":
            future.result(timeout=60)
        return future

    asyncio.run_coroutine_threadsafe = schedule_and_wait_for_lifespan


def _dag_from(path: Path, dag_id: str) -> object:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0 and 3.1 keep it in airflow.models
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    import airflow

    if airflow.__version__.startswith("3.0."):
        # 3.0's dag.test() does not write the DAG to the metadata database, so the assets it
        # reads and writes are never activated and the task refuses them as inactive; the dag
        # processor does this in a deployment, and dag.test() itself from 3.1 on.
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()
        bag.sync_to_db(bundle_name="dags-folder", bundle_version=None)
    return bag.get_dag(dag_id)


def _test_run(dag: object, day: str) -> dict[str, str]:
    from datetime import datetime, timezone

    when = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    dag_run = dag.test(logical_date=when, run_after=when)  # type: ignore[attr-defined]
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _example_dag(running: object) -> None:
    import pyarrow.dataset as ds

    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    sys.path.insert(0, str(dags))
    from example_data import write_tickets  # type: ignore[import-not-found]

    lake = Path(os.environ["CLAUDE_BATCH_EXAMPLE_DATA"])
    write_tickets(lake, "2026-11-01", ROWS)
    dag = _dag_from(dags / "claude_batch_support_tickets.py", "claude_batch_support_tickets")
    states = _test_run(dag, "2026-11-01")
    assert states == {"submit": "success", "wait": "success", "land": "success"}, states
    table = ds.dataset(lake / "support" / "ticket_labels" / "ds=2026-11-01", format="parquet").to_table()
    assert table.num_rows == ROWS, table.num_rows
    assert sorted(table.column("custom_id").to_pylist()) == sorted(table.column("ticket_id").to_pylist())
    emulator = running.emulator  # type: ignore[attr-defined]
    assert emulator.stats["batches_created"] >= 1
    # How the deferred wait polled (the trigger reads shared ``list`` pages, and retrieves a
    # batch those pages did not show): printed, so a log tells which path a minor took.
    print(f"  the wait's polls: list {emulator.calls['list']}, retrieve {emulator.calls['retrieve']}", flush=True)


DECORATOR_DAG = """
from datetime import datetime

from airflow.sdk import DAG, task

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["Billing", "Technical", "Other"]}},
    "required": ["label"],
    "additionalProperties": False,
}

with DAG("smoke_decorator", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task.claude_batch(
        prompt="Label this ticket: {body}", id_column="ticket_id", model="claude-haiku-4-5",
        max_tokens=200, output_schema=SCHEMA, poll_interval=0.2,
    )
    def label_tickets():
        return [{"ticket_id": f"t-{i}", "body": f"ticket number {i}"} for i in range(%d)]

    label_tickets()
"""


def _decorator_typed_and_reused(running: object) -> None:
    import pyarrow.dataset as ds

    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "smoke_decorator.py"
    path.write_text(DECORATOR_DAG % TYPED_ROWS)
    dag = _dag_from(path, "smoke_decorator")
    stats = running.emulator.stats  # type: ignore[attr-defined]
    work = Path(os.environ["AIRFLOW__CLAUDE_BATCH__WORK_DIR"]) / "smoke_decorator"
    for day, new_batches in (("2026-11-01", "some"), ("2026-11-02", 0)):
        before = stats["batches_created"]
        states = _test_run(dag, day)
        assert states == {"label_tickets": "success"}, states
        created = stats["batches_created"] - before
        assert created > 0 if new_batches == "some" else created == 0, (day, created)
        (output,) = [p for p in work.glob("*/label_tickets/output") if day in p.parent.parent.name]
        table = ds.dataset(output, format="parquet").to_table()
        assert sorted(table.column("custom_id").to_pylist()) == sorted(f"t-{i}" for i in range(TYPED_ROWS))
        assert set(table.column("output_status").to_pylist()) == {"valid"}, table.column("output_status")
        assert set(table.column("label").to_pylist()) <= {"Billing", "Technical", "Other"}


def _page_json(running: object) -> None:
    import airflow.api_fastapi.app as api_app
    from fastapi.testclient import TestClient

    from airflow_provider_claude_batch.compat import request_user_dependency
    from airflow_provider_claude_batch.plugins.batches_page import ClaudeBatchesPlugin

    class Everyone:  # the auth manager is Airflow's, not what is smoked here
        def is_authorized_connection(self, **_: object) -> bool:
            return True

        def get_authorized_dag_ids(self, **_: object) -> set[str]:
            return {"claude_batch_support_tickets", "smoke_decorator"}

    api_app.get_auth_manager = lambda: Everyone()  # type: ignore[assignment]
    (app_spec,) = ClaudeBatchesPlugin.fastapi_apps
    app = app_spec["app"]
    app.dependency_overrides[request_user_dependency()] = lambda: "smoke"
    with TestClient(app) as client:
        answer = client.get("/api/batches")
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    assert len(body["rows"]) == running.emulator.stats["batches_created"], body["rows"]  # type: ignore[attr-defined]
    example = [r for r in body["runs"] if r["dag_id"] == "claude_batch_support_tickets"]
    assert example and example[0]["state"] == "landed", example


# --------------------------------------------------------------------------- entry point
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*TARGETS, []], help=f"{', '.join(TARGETS)} (default: all)")
    parser.add_argument("--uv", default=shutil.which("uv"), help="the uv executable")
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
    os.environ["PATH"] = f"{Path(args.uv).parent}{os.pathsep}{os.environ['PATH']}"  # find_python's uv
    names = args.names or [name for name in TARGETS if name not in UNSUPPORTED]
    started = time.monotonic()
    wheel = build_dists(args.uv)

    def install(name: str) -> tuple[Path, float]:
        began = time.monotonic()
        return build_venv(name, args.uv, wheel, args.pins), time.monotonic() - began

    def run(name: str) -> str:
        py, install_seconds = installs[name]
        began = time.monotonic()
        smoke(name, py)
        return f"{versions_line(name, py, args.uv)}\n[{name}] ok: install {install_seconds:.0f} s, smoke {time.monotonic() - began:.0f} s"

    # Installs side by side (network and disk, sharing uv's cache), then the smokes two at a time.
    with ThreadPoolExecutor(max_workers=3) as pool:
        installs = dict(zip(names, pool.map(install, names), strict=True))
    with ThreadPoolExecutor(max_workers=SMOKE_PARALLELISM) as pool:
        for line in pool.map(run, names):
            print(line, flush=True)
    print(f"smoke-deps: {len(names)} virtualenvs proven in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
