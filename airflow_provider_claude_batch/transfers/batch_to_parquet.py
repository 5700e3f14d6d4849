"""ClaudeBatchToParquetOperator: ended batches -> Parquet, one row per input request."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_claude_batch.batching.errors import ClaudeBatchError
from airflow_provider_claude_batch.batching.landing import write_parts
from airflow_provider_claude_batch.batching.pricing import PriceTable
from airflow_provider_claude_batch.batching.storage import remove_tree, replace_tree
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.workdir import as_storage_path, open_manifest

if TYPE_CHECKING:
    from airflow.sdk import Context


class ClaudeBatchToParquetOperator(BaseOperator):
    """Stream the results of every batch of a manifest into Parquet.

    Each batch's raw results JSONL is saved to the work directory first
    (``raw/{batch_id}.jsonl``; a connection dropped mid-download restarts it), then parsed
    in record batches and written as Parquet row groups, one ``part-NNNNN.parquet`` per
    chunk, so memory stays flat however many results there are. The destination folder is
    written under a temporary name and then swapped in whole: a rerun replaces it, so
    backfills and clears never duplicate rows.

    :param manifest: the submit task's output (``submit.output``) or a manifest path/URI.
    :param destination: folder path or URI of the output (templated, e.g. with ``{{ ds }}``).
    :param keep_columns: input columns joined back to each result by custom_id.
    :param row_group_size: rows per Parquet row group (and per record batch in memory).
    :param compression: Parquet compression codec.
    :param prices: overrides of the price table used for ``cost_usd`` (model -> USD per
        million tokens), see :mod:`airflow_provider_claude_batch.batching.pricing`.
    :param claude_batch_conn_id: defaults to the manifest's connection.

    Returns (XCom) the destination, rows per result type, tokens and cost.
    """

    template_fields: Sequence[str] = ("manifest", "destination", "keep_columns", "claude_batch_conn_id")
    ui_color = "#d4e3e8"

    def __init__(
        self,
        *,
        manifest: Any,
        destination: str,
        keep_columns: list[str] | None = None,
        row_group_size: int = 65_536,
        compression: str = "zstd",
        prices: dict[str, Any] | None = None,
        claude_batch_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest = manifest
        self.destination = destination
        self.keep_columns = keep_columns
        self.row_group_size = row_group_size
        self.compression = compression
        self.prices = prices
        self.claude_batch_conn_id = claude_batch_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        manifest, run_dir = open_manifest(self.manifest)
        hook = ClaudeBatchHook(self.claude_batch_conn_id or manifest.conn_id)
        raw_files: dict[str, Any] = {}
        for record in manifest.batches:
            if record.batch_id is None:
                raise ClaudeBatchError(f"{record.key} has no batch: the submit task did not finish; clear it")
            raw = run_dir / "raw" / f"{record.batch_id}.jsonl"
            raw_files[record.batch_id] = raw
            if raw.exists():
                self.log.info("Raw results of %s already saved at %s.", record.batch_id, raw)
                continue
            batch = hook.retrieve_batch(record.batch_id)
            if batch.processing_status != "ended":
                raise ClaudeBatchError(
                    f"batch {record.batch_id} ({record.key}) is still {batch.processing_status}; "
                    "wait for it with ClaudeBatchSensor before landing its results"
                )
            hook.download_results(record.batch_id, raw)
            record.results_file = f"raw/{record.batch_id}.jsonl"
        manifest.save(run_dir)

        destination = as_storage_path(self.destination)
        staged = destination.parent / f".{destination.name}.tmp-{uuid.uuid4().hex[:12]}"
        staged.mkdir(parents=True, exist_ok=True)
        try:
            stats = write_parts(
                run_dir,
                manifest,
                raw_files,
                staged,
                keep_columns=list(self.keep_columns or []),
                prices=PriceTable.load(self.prices),
                row_group_size=self.row_group_size,
                compression=self.compression,
            )
            replace_tree(staged, destination)
        except BaseException:
            remove_tree(staged)
            raise
        summary = {"destination": str(destination), **stats.as_dict()}
        self.log.info(
            "Landed %d rows in %s (%s); tokens %s; cost $%.4f%s.",
            stats.rows,
            destination,
            ", ".join(f"{count} {kind}" for kind, count in sorted(stats.by_result_type.items())),
            dict(stats.tokens),
            stats.cost_usd,
            f" ({stats.rows_without_cost} succeeded rows of an unpriced model)" if stats.rows_without_cost else "",
        )
        return summary
