"""ClaudeBatchDeleteFilesOperator: delete the files runs uploaded through the Files API once
no run needs them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_claude_batch.conventions import DEFAULT_CONN_ID, age, pick_alias
from airflow_provider_claude_batch.workdir import work_directory

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Uploads older than this are deleted when no ``max_age`` is given.
DEFAULT_MAX_AGE = timedelta(days=7)


class ClaudeBatchDeleteFilesOperator(BaseOperator):
    """Delete the files that runs of a work directory uploaded (``upload="files"`` or
    ``"auto"``) in the connection's workspace, once they are ``max_age`` old: each is deleted
    through the Files API and its record in ``_files/`` removed.

    A file that a run not landed yet refers to (a manifest without ``landing.json`` whose
    batches sent it) is never deleted, whatever its age. A later run that needs a deleted file
    uploads it again; its answers, stored by the document's bytes, are reused all the same. Run
    it from a maintenance DAG, like ``ClaudeBatchCompactAnswersOperator``.

    :param conn_id: the ``claude_batch`` connection whose workspace the files are in.
    :param work_dir: the work directory (templated); default ``[claude_batch] work_dir``.
    :param max_age: uploads at least this old are deleted (seconds, a ``timedelta`` or text like
        ``"7d"``; 0 deletes every upload no open run refers to). Default 7 days.

    Returns (XCom) how many files were deleted, already gone, kept in use and kept as young.
    """

    template_fields: Sequence[str] = ("work_dir", "conn_id")
    ui_color = "#e8dfd4"

    def __init__(
        self,
        *,
        conn_id: str | None = None,
        claude_batch_conn_id: str | None = None,
        work_dir: str | None = None,
        max_age: float | timedelta | str = DEFAULT_MAX_AGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = pick_alias("conn_id", conn_id, "claude_batch_conn_id", claude_batch_conn_id) or DEFAULT_CONN_ID
        self.work_dir = work_dir
        self.max_age = age(max_age, "max_age")

    def execute(self, context: Context) -> dict[str, int]:
        from airflow_provider_claude_batch.batching.submit.uploads import delete_uploads
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        hook = ClaudeBatchHook(self.conn_id)
        work_dir = work_directory(self.work_dir)
        stats = delete_uploads(work_dir, hook, max_age=self.max_age).as_dict()
        self.log.info(
            "Uploaded files of %s in workspace %s older than %s: %s.",
            work_dir,
            hook.files_workspace,
            self.max_age,
            stats,
        )
        return stats
