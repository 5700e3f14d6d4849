"""The calls the core makes of the Message Batches API, as typing Protocols.

The core never imports the hook (``hooks/claude_batch.py`` is an Airflow hook, and the core
runs without Airflow); it takes any object that has the calls it makes. Each step asks only
for what it calls: a wait needs :class:`BatchReader`, a cancel :class:`BatchCanceller`, a
landing :class:`ResultsReader`; the create-once protocol's calls are
:class:`~airflow_provider_claude_batch.batching.submit.create_once.BatchCreator`, one layer
up because they name the work directory's ownership rules. ``ClaudeBatchHook`` satisfies
every one (``hooks/claude_batch.py`` asserts it for mypy), and a test double implements one
only where the emulator cannot stand in.

Invariant: these Protocols name calls, never how they are made; retries, translation of SDK
errors to ``ClaudeBatchAPIError`` and the key stay in the hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anthropic.types.messages import MessageBatch


class CreatedBatch(Protocol):
    """What the core reads of a batch it created or adopted."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def processing_status(self) -> str: ...


class BatchReader(Protocol):
    """One batch's state (raises ``ClaudeBatchAPIError``, e.g. not found or auth)."""

    def retrieve_batch(self, batch_id: str) -> MessageBatch: ...


class BatchCanceller(Protocol):
    def cancel_batch(self, batch_id: str) -> MessageBatch: ...


class AsyncBatchCanceller(Protocol):
    async def acancel_batch(self, batch_id: str) -> MessageBatch: ...


class ResultsReader(BatchReader, BatchCanceller, Protocol):
    """What a landing calls: states, cancels on timeout, and results, streamed or saved."""

    def iter_results_bytes(self, batch_id: str, *, chunk_size: int = ..., attempts: int = ...) -> Iterator[bytes]: ...

    def download_results(self, batch_id: str, destination: Any, *, attempts: int = ...) -> int: ...


class TokenCounter(Protocol):
    """The free ``count_tokens`` endpoint: input tokens of one request's params."""

    def count_tokens(self, params: Any) -> int: ...
