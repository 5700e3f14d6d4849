"""``[core] hostname_callable`` for the distributed test: each worker and triggerer process of
the one test machine reports its own name (``CLAUDE_BATCH_TEST_HOSTNAME``), as separate machines
would, so the test can tell which process holds a task or a trigger."""

from __future__ import annotations

import os
import socket


def from_environment() -> str:
    return os.environ.get("CLAUDE_BATCH_TEST_HOSTNAME") or socket.getfqdn()
