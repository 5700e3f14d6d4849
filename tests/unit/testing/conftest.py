"""Fixtures shared by the emulator's unit tests."""

from __future__ import annotations

import anthropic
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import TEST_API_KEY


@pytest.fixture
def client(emulator: RunningEmulator) -> anthropic.Anthropic:
    """The unmodified SDK against the emulator, validating every response strictly."""
    return anthropic.Anthropic(
        api_key=TEST_API_KEY, base_url=emulator.base_url, max_retries=2, _strict_response_validation=True
    )
