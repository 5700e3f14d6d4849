"""A run's input tokens counted on a sample of its rendered requests, and what they cost.

Counting every request would cost one API call per row; a sample spread evenly over the
staged chunks (every k-th request) is counted through ``count_tokens`` instead, and its tokens
per byte of request line scale to the run's bytes, per model. Output is not known before the
answers exist, so it stays a ceiling: every answer at its ``max_tokens``.

The estimate replaces the byte-for-token bound in the budget (``max_cost_usd``) when the run
counts tokens: the same formula (``pricing.cost_ceiling``), fed counted tokens instead of
bytes. Nothing here creates a batch.

With answer reuse on, an estimate prices what a submit would send, not every row: rows the
reuse plan (``reuse``) answers from the store, deduplicates or awaits from another run's batch
are counted beside the requests (:meth:`TokenEstimate.with_reuse`) and cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import msgspec

from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.api.media import blocks_in_tally
from airflow_provider_claude_batch.batching.api.pricing import PriceTable, RequestTally, cost_ceiling
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath

if TYPE_CHECKING:  # submission counts through this module
    from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts
    from airflow_provider_claude_batch.batching.submit.staging import StagedRun

#: Requests counted when no sample size is given: enough for a few percent on even text.
DEFAULT_SAMPLE = 100


class _Line(msgspec.Struct, gc=False):
    params: dict[str, Any]


_line = msgspec.json.Decoder(_Line)


@dataclass
class TokenEstimate:
    """What a run would send and cost. ``requests``, the tokens and ``cost_usd`` cover the
    requests sent only; ``rows`` is every input row, of which ``reused``, ``deduplicated`` and
    ``awaited`` are not sent (answered from the store, by an identical request of the run, by
    another run's batch not landed yet) and cost nothing."""

    requests: int
    batches: int
    sampled: int
    #: Estimated input tokens of every request, and the most output tokens the answers may use.
    input_tokens: int
    output_tokens_ceiling: int
    #: At batch prices, input as counted and every answer at max_tokens; None when it cannot be
    #: known (a model without a price, server tools), and ``why_cost_unknown`` says why.
    cost_usd: float | None
    why_cost_unknown: list[str] = field(default_factory=list)
    #: Every input row (``requests`` plus the rows not sent); ``None``: the same as ``requests``.
    rows: int | None = None
    reused: int = 0
    deduplicated: int = 0
    awaited: int = 0
    #: What the reused answers had cost the runs that paid for them (None: some had no price).
    reused_cost_usd: float | None = 0.0
    #: Batches an earlier try of this task created for the same input: a submit re-attaches to
    #: them and sends nothing (0 when the estimate is that of a first try).
    reattached_batches: int = 0

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = self.requests

    @classmethod
    def nothing_to_send(cls) -> TokenEstimate:
        """The estimate of a run whose every row is answered without a request: $0, no batch."""
        return cls(requests=0, batches=0, sampled=0, input_tokens=0, output_tokens_ceiling=0, cost_usd=0.0)

    def with_reuse(self, counts: ReuseCounts | None) -> TokenEstimate:
        """This estimate of the sent requests, with how the rows divided under the reuse plan."""
        if counts is None:
            return self
        return replace(
            self,
            rows=counts.rows,
            reused=counts.reused,
            deduplicated=counts.deduplicated,
            awaited=counts.awaited,
            reused_cost_usd=counts.reused_cost_usd,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def reattaching(cls, rows: int, batches: int) -> TokenEstimate:
        """The estimate of a task whose earlier try already created ``batches`` for the same
        input (the same fingerprint): a submit re-attaches to them, so nothing more is sent."""
        return replace(cls.nothing_to_send(), rows=rows, reattached_batches=batches)

    def describe(self) -> str:
        if self.reattached_batches:
            return (
                f"nothing new to send: an earlier try of this task already created {self.reattached_batches} "
                f"batch(es) for these {self.rows:,} rows (the same input), which a submit re-attaches to; "
                "$0 more at batch prices"
            )
        not_sent = (
            f" (not sent, $0: {self.reused:,} reused from the answer store, {self.deduplicated:,} deduplicated, "
            f"{self.awaited:,} awaited from other runs' batches)"
            if self.rows != self.requests
            else ""
        )
        if not self.requests:
            return f"nothing to send: all {self.rows:,} rows are answered{not_sent}; 0 batches, $0 at batch prices"
        cost = (
            "unknown (" + "; ".join(self.why_cost_unknown) + ")"
            if self.cost_usd is None
            else (f"${self.cost_usd:,.4f}")
        )
        rows = f"{self.rows:,} rows{not_sent}; " if self.rows != self.requests else ""
        return (
            f"{rows}{self.requests:,} requests to send in {self.batches} batch(es): about {self.input_tokens:,} input "
            f"tokens (counted on {self.sampled} sampled requests), at most {self.output_tokens_ceiling:,} output "
            f"tokens; at most {cost} at batch prices"
        )


def sample_lines(run_dir: RunDir | StoragePath, requests_files: list[str], total: int, size: int) -> list[bytes]:
    """About ``size`` request lines spread evenly over the run (every k-th), read in one pass."""
    run_dir = RunDir.of(run_dir)
    step = max(1, total // max(1, size))
    picked: list[bytes] = []
    index = 0
    for name in requests_files:
        with (run_dir / name).open("rb") as handle:
            for line in iter_file_lines(handle):
                if not line:
                    continue
                if index % step == 0 and len(picked) < size:
                    picked.append(line)
                index += 1
    return picked


def estimate(
    tally: Mapping[str, RequestTally],
    lines: list[bytes],
    count_tokens: Callable[[dict[str, Any]], int],
    prices: PriceTable,
    *,
    batches: int,
) -> tuple[TokenEstimate, dict[str, RequestTally]]:
    """Scale the sample's tokens per byte, per model, to the run (``tally``: per model, the
    requests and their line bytes, as the renderer counted them). Returns the estimate and the
    tally with counted tokens in place of bytes."""
    counted: dict[str, list[int]] = {}
    for line in lines:
        params = _line.decode(line).params
        model = str(params.get("model"))
        tokens, size = counted.setdefault(model, [0, 0])
        # Measured as the renderer measures the run: documents as their tokens, not their base64.
        counted[model] = [tokens + count_tokens(params), size + len(line) + blocks_in_tally(params.get("messages"))]
    overall = sum(t for t, _ in counted.values()) / max(1, sum(b for _, b in counted.values()))
    scaled: dict[str, RequestTally] = {}
    for model, run in tally.items():
        tokens, size = counted.get(model, (0, 0))
        per_byte = tokens / size if size else overall  # a model the sample missed: the run's rate
        scaled[model] = replace(run, input_bytes=round(run.input_bytes * per_byte))
    # cost_ceiling reads ``input_bytes`` as tokens: here they are counted tokens.
    cost, unknown = cost_ceiling(scaled, prices)
    return TokenEstimate(
        requests=sum(t.requests for t in tally.values()),
        batches=batches,
        sampled=len(lines),
        input_tokens=sum(t.input_bytes for t in scaled.values()),
        output_tokens_ceiling=sum(t.max_output_tokens for t in scaled.values()),
        cost_usd=cost,
        why_cost_unknown=unknown,
    ), scaled


def count_staged(
    staged: StagedRun,
    run_dir: RunDir | StoragePath,
    count_tokens: Callable[[dict[str, Any]], int],
    prices: PriceTable,
    sample: int = DEFAULT_SAMPLE,
) -> tuple[TokenEstimate, StagedRun]:
    """The estimate of a staged run, and the run with its tally in counted tokens (what the
    budget check then prices)."""
    files = [RunDir.staged_file(staged.directory_name, chunk.requests_file) for chunk in staged.chunks]
    lines = sample_lines(run_dir, files, staged.total_requests, sample)
    found, tally = estimate(staged.tally, lines, count_tokens, prices, batches=len(staged.chunks))
    return found, replace(staged, tally=tally)
