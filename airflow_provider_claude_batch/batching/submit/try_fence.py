"""A newer try of a task instance fences the older one: only the newest try creates batches.

Airflow runs one try of a task instance at a time, but not always: after a clear, the first
try may still be creating for seconds under a real scheduler (and for as long as it runs under
``dag.test``) while the second starts. Both work from the same run folder; the create-once
protocol makes the newer one wait for the older's create in flight, but without a fence both
then go on creating the remaining chunks, and each bills them.

The rule: a try *takes* the run folder as its first step, by writing a marker of its own
(``_tries/try-NNNNN.json``: one file per try, never overwritten, so two tries taking the folder
at once cannot erase each other's claim), and before each create a try *checks* that no
marker of a higher try number exists. The older try then stops with
:class:`~airflow_provider_claude_batch.exceptions.ClaudeBatchSupersededError`.

Why it is enough: the older try saves its intent before its last check and creates after it.
If that check ran before the newer try's marker existed, the intent was saved before the newer
try read the manifest, so the newer try sees the create in flight and waits for its batch (as
it does for any earlier try's create). If the check ran after, the older try sends nothing.
The older try then saves nothing more (its copy of the manifest is stale), so it cannot undo
what the newer one recorded.

Tries with the same number (two Submissions of one try, as tests and the decorator make) and
try number 0 (unknown) never fence each other.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from airflow_provider_claude_batch.batching.state.manifest import utcnow_iso
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import children, write_whole
from airflow_provider_claude_batch.exceptions import ClaudeBatchSupersededError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TryFence:
    """The fence of one try (``try_number``) over its run folder."""

    run_dir: RunDir
    try_number: int

    def take(self) -> None:
        """Mark the run folder as taken by this try (a no-op for an unknown try number)."""
        if self.try_number <= 0:
            return
        folder = self.run_dir.tries_folder
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / RunDir.try_marker(self.try_number)
        if not marker.exists():
            write_whole(marker, json.dumps({"try_number": self.try_number, "taken_at": utcnow_iso()}).encode())

    def newest(self) -> int:
        """The highest try number that has taken the folder (0: none)."""
        folder = self.run_dir.tries_folder
        if not folder.exists():
            return 0
        numbers = [RunDir.try_of_marker(child.name) for child in children(folder)]
        return max((n for n in numbers if n is not None), default=0)

    def check(self) -> None:
        """Raise when a newer try has taken the folder: this try must not create."""
        if self.try_number <= 0:
            return
        newest = self.newest()
        if newest > self.try_number:
            raise ClaudeBatchSupersededError(
                f"try {newest} of this task instance took its run folder {self.run_dir} while try "
                f"{self.try_number} was creating; try {self.try_number} stops here and creates nothing more "
                "(the newer try re-attaches what was created and creates the rest)"
            )
