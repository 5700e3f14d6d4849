"""What a batch billed when no landing summary says so: an ended batch whose transfer failed (or
never ran) is billed all the same. Its raw results, once downloaded into its run folder
(``raw/{batch_id}.jsonl``), are priced the way landing prices them: :class:`ResultParser` at
the configured price table (``[claude_batch] prices``), summing ``cost_usd`` over its results.

Invariants:

* A cost is a full sum or None, never part of one: a result of a model missing from the price
  table makes the batch's cost unknown, as in the landing summary.
* Read only, and only the batches asked for (those that ended and did not land); a raw file
  that cannot be read or parsed becomes a note, never an exception.
* A raw results file is written whole once (an atomic rename), so its cost is computed once
  per api-server process and remembered (:data:`_KNOWN_RAW_COSTS`, bounded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.compute as pc

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.api.results import ResultParser
from airflow_provider_claude_batch.batching.state.batch_index import BatchOwner
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir

log = logging.getLogger(__name__)

#: batch id -> cost in USD (None: a model of its results has no price).
Costs = dict[str, float | None]

#: raw results file -> its cost, for the files already priced in this process.
_KNOWN_RAW_COSTS: dict[str, float | None] = {}
_KNOWN_RAW_COSTS_MAX = 100_000


def raw_results_cost(raw_file: Any, batch_id: str, prices: PriceTable) -> float | None:
    """What the results in ``raw_file`` cost at ``prices`` (None: some are of an unpriced model)."""
    parser = ResultParser(batch_id, 0, prices)
    total = 0.0
    unpriced = 0
    with raw_file.open("rb") as handle:
        for block in parser.parse_file(handle, source=str(raw_file)):
            cost = block.column("cost_usd")
            # Rows with usage but no cost: a model missing from the price table (as landing counts).
            unpriced += cost.null_count - block.column("input_tokens").null_count
            total += float(pc.sum(cost).as_py() or 0.0)
    return None if unpriced else round(total, 6)


def _cost_of(raw_file: Any, batch_id: str, prices: Callable[[], PriceTable]) -> tuple[bool, float | None]:
    """(found, cost) of one batch's raw results; cached once priced."""
    key = str(raw_file)
    if key in _KNOWN_RAW_COSTS:
        return True, _KNOWN_RAW_COSTS[key]
    if not raw_file.exists():
        return False, None
    cost = raw_results_cost(raw_file, batch_id, prices())
    if len(_KNOWN_RAW_COSTS) >= _KNOWN_RAW_COSTS_MAX:
        _KNOWN_RAW_COSTS.clear()
    _KNOWN_RAW_COSTS[key] = cost
    return True, cost


def raw_costs(
    work_dir: WorkDir | Any,
    origins: dict[str, BatchOwner],
    batch_ids: Iterable[str],
    prices: Callable[[], PriceTable],
) -> tuple[Costs, list[str]]:
    """batch id -> what it billed, from its raw results in the run folder of the task that
    created it (``origins``), for those of ``batch_ids`` whose results were downloaded; notes on
    what could not be read. ``prices`` is called only when there is a file to price."""
    work_dir = WorkDir.of(work_dir)
    wanted = [batch_id for batch_id in dict.fromkeys(batch_ids) if batch_id in origins]

    def price(batch_id: str) -> tuple[str, bool, float | None, str | None]:
        origin = origins[batch_id]
        run_dir = work_dir.run(origin.dag_id, origin.run_id, origin.task_id, origin.map_index)
        try:
            found, cost = _cost_of(run_dir / RunDir.raw_results_file(batch_id), batch_id, prices)
        except Exception as exc:  # one unreadable file must not hide the other costs
            log.warning("Claude Batches page: raw results of %s not priced: %s", batch_id, type(exc).__name__)
            return batch_id, False, None, f"The raw results of {batch_id} were not priced: {exc}"
        return batch_id, found, cost, None

    costs: Costs = {}
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="claude-batches-costs") as pool:
        for batch_id, found, cost, problem in pool.map(price, wanted):
            if problem:
                notes.append(problem)
            if found:
                costs[batch_id] = cost
    return costs, notes


__all__ = ["Costs", "raw_costs", "raw_results_cost"]
