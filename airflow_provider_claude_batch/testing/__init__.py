"""Testing support: a local emulator of the Message Batches API and its pytest fixture."""

from __future__ import annotations

from airflow_provider_claude_batch.testing.emulator import (
    DEFAULT_API_KEY,
    EMULATOR_TAG,
    Emulator,
    EmulatorConfig,
    Fault,
    RunningEmulator,
    start_emulator,
)

__all__ = [
    "DEFAULT_API_KEY",
    "EMULATOR_TAG",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "RunningEmulator",
    "start_emulator",
]
