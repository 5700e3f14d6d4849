"""Measurement helpers: every case runs in its own process, so peak RSS is its own."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """This process's own peak RSS. ``VmHWM`` is reset by exec; ``ru_maxrss`` is not (a child
    would report its parent's peak at fork time)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(extra: dict[str, Any] | None = None, *, started: float, cpu_started: float) -> None:
    """Print one measurement as the last line of a case process."""
    result = {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "rss_mb": peak_rss_mb(),
        **(extra or {}),
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_case(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if done.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :])


@dataclass
class Series:
    """Repeated measurements of one case."""

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(run[key]) for run in self.runs]

    def cell(self, key: str, fmt: str = "{:.2f}") -> str:
        values = self.values(key)
        if not values:
            return "-"
        median = statistics.median(values)
        return f"{fmt.format(median)} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    def median(self, key: str) -> float:
        return statistics.median(self.values(key))


def repeat(name: str, runs: int, case: Callable[[], dict[str, Any]]) -> Series:
    series = Series(name)
    for _ in range(runs):
        series.runs.append(case())
        print(f"  {name}: {series.runs[-1]}", flush=True)
    return series


def machine_line() -> str:
    cpus = os.cpu_count()
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("anthropic", "pyarrow", "msgspec", "apache-airflow", "pandas")
    )
    return (
        f"{platform.machine()}, {cpus} cores, {memory_gb:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {packages}"
    )
