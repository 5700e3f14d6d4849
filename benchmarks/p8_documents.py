"""P8: staging documents. A folder of PDFs -> request chunks with each file inline (read,
checked, base64-encoded into its request line), against the floor: reading the same bytes
and base64-encoding them, nothing else. Files/s, MB/s of file bytes and peak RSS, each case
in its own process.

    python -m benchmarks.p8_documents [FILES]          (make the folder, run both cases, print)
    python -m benchmarks.p8_documents case floor|stage FOLDER   (one measured process)
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import report, run_case


def make_folder(folder: Path, files: int) -> int:
    """``files`` one-page PDFs of 20 KB to 1 MB (padded), about 500 KB on average; total bytes."""
    from airflow_provider_claude_batch.testing.sample_files import make_pdf

    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for n in range(files):
        size = 20_000 + (n * 7_919) % 980_000
        data = make_pdf([[f"Invoice {n}"]], padding=size)
        (folder / f"doc-{n:05d}.pdf").write_bytes(data)
        total += len(data)
    return total


def floor(folder: Path) -> dict[str, float]:
    """Read every file and base64-encode it: the least any inline staging must do."""
    total = 0
    for path in sorted(folder.iterdir()):
        total += len(base64.b64encode(path.read_bytes()))
    return {"encoded_bytes": total}


def stage(folder: Path) -> dict[str, float]:
    """The submit task's staging of the folder as one document per row (no API call; imports
    and the spec are made before the clock starts, see :func:`main`)."""
    from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests

    spec = _SPEC[0]
    with tempfile.TemporaryDirectory() as work:
        staged = stage_requests(str(folder), spec, ChunkLimits(), Path(work), keys=True)
        return {"chunks": len(staged.chunks), "body_bytes": sum(c.body_bytes for c in staged.chunks)}


_SPEC: list[Any] = []


def _prepare(case: str) -> None:
    """Imports and the request spec, outside the measured time (the SDK alone imports for seconds)."""
    if case == "stage":
        from airflow_provider_claude_batch.batching.render.documents import content_spec
        from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
        from airflow_provider_claude_batch.batching.submit import staging  # noqa: F401

        _SPEC.append(
            RequestSpec(
                prompt="Extract the fields.", model="claude-sonnet-4-6", max_tokens=256, content=content_spec(["path"])
            )
        )


def main() -> None:
    if sys.argv[1:2] == ["case"]:
        _prepare(sys.argv[2])
        started, cpu = time.perf_counter(), time.process_time()
        measured = {"floor": floor, "stage": stage}[sys.argv[2]](Path(sys.argv[3]))
        report(measured, started=started, cpu_started=cpu)
        return
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "docs"
        total = make_folder(folder, files)
        results: dict[str, list[dict[str, Any]]] = {}
        for case in ("floor", "stage", "floor", "stage"):  # warm cache first, then measure each twice
            results.setdefault(case, []).append(run_case("benchmarks.p8_documents", "case", case, str(folder)))
        summary: dict[str, Any] = {
            "files": files,
            "file_mb": total / 1e6,
            "load_1min": os.getloadavg()[0],
            **{
                case: {
                    "seconds": min(r["seconds"] for r in runs),
                    "mb_per_second": total / 1e6 / min(r["seconds"] for r in runs),
                    "files_per_second": files / min(r["seconds"] for r in runs),
                    "rss_mb": max(r["rss_mb"] for r in runs),
                    "cpu_seconds": min(r["cpu_seconds"] for r in runs),
                }
                for case, runs in results.items()
            },
        }
        summary["stage_vs_floor"] = summary["floor"]["seconds"] / summary["stage"]["seconds"]
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
