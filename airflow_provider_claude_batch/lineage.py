"""OpenLineage for the submit, the transfer and ``@task.claude_batch``.

Airflow's OpenLineage integration (the ``apache-airflow-providers-openlineage`` package) calls
an operator's ``get_openlineage_facets_on_complete`` after a successful run. Ours report:

* inputs: the rows' source when it is a dataset (a file, folder or Asset URI; a list or a
  DataFrame from XCom has no name to report), with its row count;
* outputs (transfer and decorator): the Parquet destination, with its row and file counts
  and its schema, read from the first part file's footer (one small read).

The provider must work without the OpenLineage package: nothing here imports it at module
level, and operators only call :func:`operator_lineage` when Airflow asks for lineage, which
it only does when the package is installed. Dataset names follow OpenLineage's naming
convention: ``file`` + absolute path for local paths, ``scheme://bucket`` + key for object
storage, without a trailing slash and without a connection id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class LineageRecord:
    """What a finished task read and wrote; only small values (kept on the operator)."""

    source: str | None = None
    requests: int | None = None
    destination: str | None = None
    rows: int | None = None
    files: list[str] = field(default_factory=list)


def source_location(source: Any) -> str | None:
    """The dataset location of a submit source: a path/URI or an Asset's URI, else ``None``."""
    uri = getattr(source, "uri", source)
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    return uri if isinstance(uri, str) and uri else None


def dataset_identity(location: str) -> tuple[str, str]:
    """OpenLineage ``(namespace, name)`` of a path or URI."""
    parsed = urlsplit(str(location))
    if parsed.scheme in ("", "file", "local") or len(parsed.scheme) == 1:  # a Windows drive is no scheme
        path = parsed.path if parsed.scheme in ("file", "local") else str(location)
        return "file", os.path.abspath(path).rstrip("/") or "/"
    bucket = parsed.netloc.rsplit("@", 1)[-1]  # ObjectStoragePath may carry "conn_id@bucket"
    return f"{parsed.scheme}://{bucket}", parsed.path.strip("/") or "/"


def operator_lineage(record: LineageRecord) -> Any:
    """The ``OperatorLineage`` of ``record`` (imports the OpenLineage package)."""
    from airflow.providers.common.compat.openlineage.facet import (
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.input_statistics_input_dataset import InputStatisticsInputDatasetFacet

    inputs = []
    if record.source:
        namespace, name = dataset_identity(record.source)
        input_facets: dict[str, Any] = {}
        if record.requests is not None:
            input_facets["inputStatistics"] = InputStatisticsInputDatasetFacet(rowCount=record.requests)
        inputs.append(InputDataset(namespace=namespace, name=name, inputFacets=input_facets))
    outputs = []
    if record.destination:
        namespace, name = dataset_identity(record.destination)
        statistics = OutputStatisticsOutputDatasetFacet(rowCount=record.rows, fileCount=len(record.files))
        schema = _schema_facet(record.destination, record.files)
        outputs.append(
            OutputDataset(
                namespace=namespace,
                name=name,
                facets={"schema": schema} if schema is not None else {},
                outputFacets={"outputStatistics": statistics},
            )
        )
    return OperatorLineage(inputs=inputs, outputs=outputs)


def _schema_facet(destination: str, files: list[str]) -> Any:
    """The Parquet schema as a ``SchemaDatasetFacet`` (from one footer), ``None`` without files."""
    if not files:
        return None
    import pyarrow.parquet as pq
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields

    from airflow_provider_claude_batch.batching.state.storage import as_path

    with (as_path(destination) / files[0]).open("rb") as handle:
        schema = pq.read_schema(handle)
    return SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=column.name, type=str(column.type)) for column in schema]
    )
