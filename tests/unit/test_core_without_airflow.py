"""The core (``airflow_provider_claude_batch.batching``) imports and runs with Airflow absent,
and pricing needs neither pyarrow nor the request renderer."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap

import airflow_provider_claude_batch.batching as core

BLOCK_AIRFLOW = textwrap.dedent(
    """
    import importlib.abc, sys

    class RefuseAirflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                raise ImportError(f"Airflow is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, RefuseAirflow())
    """
)


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_AIRFLOW + textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_every_core_module_imports_and_works_with_airflow_blocked() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(core.__path__, prefix=f"{core.__name__}."))
    assert len(modules) >= 40  # walks the sub-packages: every module, not only the top level
    result = _run(
        f"""
        import importlib, json, sys
        for name in {modules!r}:
            importlib.import_module(name)
        try:
            import airflow
        except ImportError:
            blocked = True
        else:
            blocked = False
        # And it works: render, chunk and parse without Airflow.
        import tempfile, pathlib
        from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
        from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
        from airflow_provider_claude_batch.batching.submit.staging import stage_requests
        staged = stage_requests(["a", "b"], RequestSpec(prompt="{{text}}", model="m", max_tokens=8), ChunkLimits(),
                                pathlib.Path(tempfile.mkdtemp()))
        loaded = sorted(n for n in sys.modules if n == "airflow" or n.startswith("airflow."))
        print(json.dumps({{"blocked": blocked, "airflow_modules": loaded, "requests": staged.total_requests}}))
        """
    )
    assert result == {"blocked": True, "airflow_modules": [], "requests": 2}


def test_pricing_imports_neither_pyarrow_nor_the_renderer() -> None:
    result = _run(
        """
        import json, sys
        from airflow_provider_claude_batch.batching.api.pricing import PriceTable, RequestTally, cost_ceiling
        ceiling, _ = cost_ceiling({"claude-haiku-4-5": RequestTally(1, 1_000_000, 0)}, PriceTable())
        heavy = sorted(n for n in ("pyarrow", "numpy", "airflow_provider_claude_batch.batching.render.rendering") if n in sys.modules)
        print(json.dumps({"heavy": heavy, "ceiling": ceiling}))
        """
    )
    assert result["heavy"] == []
    assert result["ceiling"] == 1.25 * 0.5  # a million bytes at the cache-write price, halved
