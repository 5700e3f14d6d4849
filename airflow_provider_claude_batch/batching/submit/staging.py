"""A run's rows rendered into request chunks under a fresh ``requests-<id>/`` folder: the
staged run the budget, the reuse plan and the creates work from.

Invariant: everything is validated while staging, before any batch exists; a bad row stops
the run with its row number and field, and the partial folder is removed. Staging writes
only inside its own new folder, so an earlier try's staging is never touched here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from airflow_provider_claude_batch.batching.api.pricing import RequestTally
from airflow_provider_claude_batch.batching.render.chunks import ChunkInfo, ChunkLimits, ChunkWriter
from airflow_provider_claude_batch.batching.render.file_rows import FILES_PER_BATCH
from airflow_provider_claude_batch.batching.render.rendering import RequestRenderer, RequestSpec
from airflow_provider_claude_batch.batching.render.sources import open_source
from airflow_provider_claude_batch.batching.state.manifest import fingerprint
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

if TYPE_CHECKING:
    from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts


@dataclass
class StagedRun:
    directory_name: str
    chunks: list[ChunkInfo]
    total_requests: int
    fingerprint: str
    input_columns: list[str] | None
    #: model -> requests, bytes and output token limits (for the cost ceiling).
    tally: dict[str, RequestTally]
    #: Each row's content key, in row order (when staged for reuse).
    keys: np.ndarray | None = None
    #: How the rows divided between sent, reused and deduplicated (after :func:`plan_reuse`).
    reuse: ReuseCounts | None = None


def _pieces(batch: pa.RecordBatch, rows: int | None) -> Iterator[pa.RecordBatch]:
    """A record batch in slices of at most ``rows`` rows (``None``: whole). Rows with documents
    are rendered a few at a time, so a run holds a few files in memory, whatever its size."""
    if rows is None or batch.num_rows <= rows:
        yield batch
        return
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


def stage_requests(
    source: Any,
    spec: RequestSpec,
    chunk_limits: ChunkLimits,
    run_dir: RunDir | StoragePath,
    *,
    input_columns: list[str] | Literal["all"] | None = "all",
    source_format: str | None = None,
    keys: bool = False,
) -> StagedRun:
    """Render every row into request chunks under a fresh ``requests-<id>/`` folder.

    Everything is validated here, before any batch exists: a bad row stops the run with its
    row number and field, and the partial folder is removed.
    """
    run_dir = RunDir.of(run_dir)
    renderer = RequestRenderer(spec)
    wanted: list[str] | None = None
    if isinstance(input_columns, list):
        wanted = list(dict.fromkeys([*renderer.needed_columns, *input_columns]))
    elif input_columns is None:
        wanted = renderer.needed_columns
    opened = open_source(source, source_format=source_format, columns=wanted)
    renderer.check_schema(opened.schema, source=opened.description)
    if input_columns == "all":
        saved: list[str] | None = list(opened.schema.names)
    elif input_columns is None:
        saved = None
    else:
        missing = [c for c in input_columns if c not in opened.schema.names]
        if missing:
            raise ClaudeBatchInputError(
                f"input_columns {missing} are not in {opened.description}; its columns are {opened.schema.names}"
            )
        saved = list(input_columns)
    name = run_dir.new_staging_name()
    directory = run_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(directory, chunk_limits, input_columns=saved, keys=keys)
    try:
        for batch in opened.batches:
            for piece in _pieces(batch, FILES_PER_BATCH if spec.content else None):
                writer.write_batch(renderer, piece)
        chunks = writer.close()
    except BaseException:
        writer.abort()
        run_dir.drop_staging(name)
        raise
    total = sum(chunk.request_count for chunk in chunks)
    digest = fingerprint(spec.describe(), chunk_limits.max_requests, chunk_limits.max_bytes, [c.sha256 for c in chunks])
    return StagedRun(name, chunks, total, digest, saved, renderer.tally(), writer.keys() if keys else None)
