#!/usr/bin/env python3
"""The project's two entry points, runnable with nothing but python3.

    python3 dev.py demo    # the example pipeline end to end (local emulator when no API key)
    python3 dev.py test    # the whole test suite on two workers (extra arguments go to pytest)

Both create ``.venv`` on first use and install exactly what ``requirements.lock`` pins (with
``uv``, itself pinned below), then reuse it while the lock and pyproject are unchanged.
Other commands: ``lint`` (ruff + mypy), ``docs`` (the documentation site, warnings as
errors), ``bench`` (benchmarks), ``soak`` (the seeded fault soak), ``lock`` (re-resolve),
``smoke-deps`` (install without the lock at the lowest and newest allowed versions, and
smoke).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".installed-lock"
UV_VERSION = "0.13.9"


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create the virtualenv and sync it to the lock, unless it already is."""
    if not PYTHON.exists():
        print(f"Creating {VENV.name} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    uv = BIN / "uv"
    if not uv.exists():
        _run(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"uv=={UV_VERSION}")
    print("Installing the locked dependencies ...", flush=True)
    _run(uv, "pip", "sync", "--quiet", "--python", PYTHON, LOCK)
    _run(uv, "pip", "install", "--quiet", "--python", PYTHON, "--no-deps", "-e", ".")
    STAMP.write_text(_fingerprint())


#: Debian packages the tests start programs of: the UI test drives chromium, the distributed
#: test runs PostgreSQL and Redis. Program -> package.
DEBIAN_PROGRAMS = {"chromium": "chromium", "redis-server": "redis-server", "initdb": "postgresql"}


def _installed(program: str) -> bool:
    import glob

    return bool(shutil.which(program) or glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))


#: What ``test`` adds to pytest's arguments: two pytest-xdist workers, each taking whole test
#: files, so a file's module and session fixtures (an Airflow deployment, the emulator) start
#: once on the worker that runs it. Two, not one per core: the system tests start deployments
#: of several processes each. Files are handed out in collection order: xdist's default hands
#: out the files with the most tests first, which leaves the slowest files (a deployment, a
#: few long tests each) to run last, side by side; in collection order they start in the
#: first half and the many quick unit-test files fill the end.
XDIST = ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]
#: Arguments after which ``test`` adds nothing: the caller chose the workers (``-n 0`` runs
#: in one process, ``-p no:xdist`` without the plugin), or asked for a debugger, which needs
#: one process.
CALLER_CHOICES = ("-n", "--numprocesses", "--dist", "no:xdist", "--pdb", "--trace")


def pytest_arguments(rest: list[str]) -> list[str]:
    """pytest's arguments for ``test``: ``rest``, on two workers unless ``rest`` says otherwise."""
    chosen = any(arg.split("=")[0] in CALLER_CHOICES or arg.startswith(("-n", "-pno:xdist")) for arg in rest)
    return rest if chosen else [*XDIST, *rest]


def ensure_debian_packages() -> None:
    """Install the packages of DEBIAN_PROGRAMS that are missing, when we may (root, apt)."""
    missing = sorted({package for program, package in DEBIAN_PROGRAMS.items() if not _installed(program)})
    if not missing or not shutil.which("apt-get") or os.name == "nt" or os.geteuid() != 0:
        return
    print(f"Installing {', '.join(missing)} for the tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, env=env, stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    if command == "lock":
        ensure_venv()
        _run(
            BIN / "uv",
            "pip",
            "compile",
            "--quiet",
            "pyproject.toml",
            "--extra",
            "test",
            "--extra",
            "docs",
            "--python-version",
            "3.11",
            "-o",
            LOCK.name,  # relative: the lock's header records the command
        )
        return 0
    ensure_venv()
    if command == "test":
        ensure_debian_packages()
        return subprocess.call([str(PYTHON), "-m", "pytest", *pytest_arguments(rest)], cwd=ROOT)
    if command == "demo":
        return subprocess.call([str(PYTHON), str(ROOT / "scripts" / "demo.py"), *rest], cwd=ROOT)
    if command == "lint":
        status = subprocess.call([str(BIN / "ruff"), "check", "."], cwd=ROOT)
        status |= subprocess.call([str(BIN / "ruff"), "format", "--check", "."], cwd=ROOT)
        return status | subprocess.call([str(BIN / "mypy")], cwd=ROOT)
    if command == "smoke-deps":
        script = ROOT / "scripts" / "smoke_deps.py"
        return subprocess.call([sys.executable, str(script), "--uv", str(BIN / "uv"), *rest], cwd=ROOT)
    if command == "docs":
        # Fresh (-E) so that every page's warnings are reported on every build, not only the
        # changed pages'; the site goes to docs/_build (gitignored).
        sphinx = [str(PYTHON), "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-E", "-q"]
        site = Path("docs", "_build", "html")
        status = subprocess.call([*sphinx, *rest, "docs", str(site)], cwd=ROOT)
        if status == 0:
            print(f"The site is in {site / 'index.html'}")
        return status
    if command == "bench":
        return subprocess.call([str(PYTHON), "-m", "benchmarks", *rest], cwd=ROOT)
    if command == "soak":
        ensure_debian_packages()
        return subprocess.call([str(PYTHON), "-m", "tests.soak", *rest], cwd=ROOT)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
