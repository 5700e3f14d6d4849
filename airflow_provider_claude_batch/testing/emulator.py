"""A local, faithful emulator of the Message Batches API: the entry module, and serving it.

The unmodified ``anthropic`` SDK talks to it over real HTTP through ``base_url``. It
validates requests as the API does, moves batches from ``in_progress`` to ``ended`` by a
clock (that tests advance instead of sleeping), answers deterministically (every text says
it comes from the emulator), injects faults on demand and counts everything it received.

State lives in one :class:`Emulator` object. In-process users (the pytest fixture) drive it
directly; out-of-process users drive it through the ``/_emulator/*`` control endpoints.

The emulator is split by concern, each module importing only the ones above it:

* :mod:`.emulator_requests`: what a create or ``count_tokens`` body is, and the API's errors;
* :mod:`.emulator_results`: the results lines and file;
* :mod:`.emulator_state`: the :class:`Emulator` state machine (batches, clock, faults, counters);
* :mod:`.emulator_app`: the HTTP application;
* this module: serving an emulator on a loopback port, in a background thread
  (:func:`start_emulator`, for tests) or in the foreground (:func:`serve_forever`, for the
  command line), and the public names of the others, importable from here as before.

Invariants of serving: every server gets a new :class:`Emulator` of its own; its socket is
bound and listening before :func:`start_emulator` returns (and before :func:`serve_forever`
prints its address), so a client may connect at once: the kernel queues the connection until
the server's loop accepts it, no sleep or poll needed.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import uvicorn

from airflow_provider_claude_batch.testing.emulator_app import RESULTS_CHUNK_BYTES, create_app
from airflow_provider_claude_batch.testing.emulator_requests import EmulatorHTTPError, count_input_tokens
from airflow_provider_claude_batch.testing.emulator_results import EMULATOR_TAG
from airflow_provider_claude_batch.testing.emulator_state import (
    DEFAULT_API_KEY,
    ENDPOINTS,
    Clock,
    Emulator,
    EmulatorConfig,
    Fault,
)

__all__ = [
    "DEFAULT_API_KEY",
    "EMULATOR_TAG",
    "ENDPOINTS",
    "RESULTS_CHUNK_BYTES",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "EmulatorHTTPError",
    "Fault",
    "RunningEmulator",
    "bind_socket",
    "count_input_tokens",
    "create_app",
    "serve_forever",
    "start_emulator",
]


@dataclass
class RunningEmulator:
    """An emulator served on a loopback port in a background thread."""

    emulator: Emulator
    host: str
    port: int
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        return sorted(self.emulator.config.api_keys)[0]

    def stop(self) -> None:
        """Ask the server to exit and wait (10 s at most) for its thread to end."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port), with a deep accept queue."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _uvicorn_config(emulator: Emulator, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(emulator),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        backlog=2048,
    )


def start_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> RunningEmulator:
    """Serve a new emulator on ``host:port`` (0: a free port) in a daemon thread.

    The listening socket is bound before this returns, so clients can connect at once: the
    kernel queues their connections until the server's loop accepts them.
    """
    emulator = Emulator(config)
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    emulator.base_url = f"http://{host}:{bound_port}"
    server = uvicorn.Server(_uvicorn_config(emulator, log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="claude-batch-emulator", daemon=True)
    thread.start()
    return RunningEmulator(emulator=emulator, host=host, port=bound_port, server=server, thread=thread)


def serve_forever(config: EmulatorConfig, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve an emulator in the foreground (the command line entry point)."""
    emulator = Emulator(config)
    sock = bind_socket(host, port)
    emulator.base_url = f"http://{host}:{sock.getsockname()[1]}"
    # Printed once the socket listens: connections made from now on queue until served.
    print(f"Claude Message Batches emulator listening on {emulator.base_url}", flush=True)
    uvicorn.Server(_uvicorn_config(emulator, log_level)).run(sockets=[sock])
