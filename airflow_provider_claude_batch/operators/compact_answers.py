"""ClaudeBatchCompactAnswersOperator: keep the answer store small and its lookups fast."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_claude_batch.config import answer_max_age
from airflow_provider_claude_batch.conventions import age
from airflow_provider_claude_batch.workdir import work_directory

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class ClaudeBatchCompactAnswersOperator(BaseOperator):
    """Compact the answer store of a work directory (``_answers/``): each partition's files
    merged into one, answers older than ``max_age`` deleted, one answer kept per request.

    Safe while other runs submit and land (see ``batching/reuse/answer_store.py``). Transfers
    compact on their own when a partition has grown many files; a weekly maintenance task
    with this operator also expires old answers, which transfers never do.

    :param work_dir: the work directory (templated); default ``[claude_batch] work_dir``.
    :param max_age: answers older than this are deleted (seconds, a ``timedelta`` or text like
        ``"30d"``); default ``[claude_batch] answer_max_age``. ``None`` after construction means
        the configured value, read when the task runs.

    Returns (XCom) the files before and after, answers kept, expired and duplicates dropped.
    """

    template_fields: Sequence[str] = ("work_dir",)
    ui_color = "#e8dfd4"

    def __init__(
        self, *, work_dir: str | None = None, max_age: float | timedelta | str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.work_dir = work_dir
        self.max_age = None if max_age is None else age(max_age, "max_age")

    def execute(self, context: Context) -> dict[str, int]:
        from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore

        max_age = self.max_age if self.max_age is not None else answer_max_age()
        store = AnswerStore(work_directory(self.work_dir))
        stats = store.compact(max_age=max_age).as_dict()
        self.log.info("Answer store %s compacted (answers older than %s expired): %s.", store.work_dir, max_age, stats)
        return stats
