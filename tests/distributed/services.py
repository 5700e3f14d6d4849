"""The services a production deployment has beside Airflow, started on loopback for the test:
PostgreSQL (the metadata DB and Celery's result backend), Redis (Celery's broker), moto's S3
server, and a proxy in front of it that answers slowly or with 5xx on demand.

Why PostgreSQL: SQLite serves one writer at a time through a file lock, and Airflow supports it
for development only; a CeleryExecutor adds the result backend's writes from every worker to
the scheduler's, the triggerers' and the api-server's. Debian's ``postgresql`` and
``redis-server`` are used (``dev.py test`` installs them when missing, as root with apt).
"""

from __future__ import annotations

import glob
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.system.stack import free_port, wait_until


def _which(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `python3 dev.py test` as root (it installs it with apt)")
    return found


class Service:
    """A server process of the test, in its own process group, with its log in ``home``."""

    name = "service"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], **kwargs: Any) -> None:
        log = (self.home / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        path = self.home / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def state(self) -> str:
        if self.process is None:
            return f"{self.name}: not started"
        code = self.process.poll()
        return f"{self.name}: {'running' if code is None else f'exited with {code}'}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Postgres(Service):
    """A throwaway cluster (no fsync: the test needs no durability), database ``airflow``."""

    name = "postgres"

    def start(self) -> None:
        # initdb and postgres refuse to run as root; the data folder must be the server user's.
        self.data = Path(tempfile.mkdtemp(prefix="claude-batch-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_user, _which("initdb"), "-D", str(self.data), "-U", "airflow", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        settings = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=300"]
        self._spawn(
            [*as_user, _which("postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port)]
            + ["-k", str(self.data)]
            + [arg for setting in settings for arg in ("-c", setting)]
        )
        isready = [_which("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow"]
        wait_until(lambda: subprocess.run(isready, capture_output=True).returncode == 0, timeout=60, what="postgres")
        subprocess.run(
            [_which("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow"], check=True
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(getattr(self, "data", ""), ignore_errors=True)


class Redis(Service):
    name = "redis"

    def start(self) -> None:
        self._spawn(
            [
                _which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        )
        wait_until(self._answers, timeout=30, what="redis")

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port).ping())
        except redis.ConnectionError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class MotoS3(Service):
    """moto's server mode: a real S3 REST API on loopback, in its own process."""

    name = "moto"

    def start(self) -> None:
        self._spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)])
        wait_until(self._answers, timeout=60, what="moto's S3 server")

    def _answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/moto-api/")
            return connection.getresponse().status < 500
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# Hop-by-hop headers, and Expect: the proxy has answered "100 Continue" itself and has the body.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
}


class _QuietServer(ThreadingHTTPServer):
    """A client killed mid-request (the soak kills workers) resets its connection: not an error
    to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class S3FaultProxy:
    """An HTTP proxy on loopback in front of the S3 server, for S3 answering slowly or failing.

    ``latency_seconds`` delays every request. ``fail_every``: every Nth request that is an SDK's
    first attempt (``amz-sdk-request: attempt=1``) gets a 503 SlowDown or a 500 InternalError,
    as S3 answers under load; its retry then goes through, so the fault is "S3 failing for a
    while", never "S3 down". ``faults`` counts the errors served, ``requests`` all requests.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.latency_seconds = 0.0
        self.fail_every = 0
        self.requests = 0
        self.faults = 0
        self._first_attempts = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self._body()
                status = proxy._fault(self.headers.get("amz-sdk-request", "attempt=1"))
                if status:
                    code = "SlowDown" if status == 503 else "InternalError"
                    payload = f"<Error><Code>{code}</Code><Message>injected by the test</Message></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                head = self.command == "HEAD"  # its Content-Length is the object's size: keep it
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not head:
                    self.wfile.write(payload)
                upstream.close()

            def _body(self) -> bytes | None:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = self.headers.get("Content-Length")
                return self.rfile.read(int(length)) if length else None

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="s3-fault-proxy", daemon=True)

    def _fault(self, sdk_request: str) -> int:
        with self._lock:
            self.requests += 1
            fail = False
            if "attempt=1" in sdk_request.replace(" ", ""):
                self._first_attempts += 1
                fail = bool(self.fail_every) and self._first_attempts % self.fail_every == 0
            if fail:
                self.faults += 1
        if self.latency_seconds:
            time.sleep(self.latency_seconds)  # the slow server being emulated, not synchronisation
        if not fail:
            return 0
        return 503 if self.faults % 2 else 500

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
