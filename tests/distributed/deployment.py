"""The production shape on one machine, started and stopped as one unit: PostgreSQL, moto's S3
behind a fault proxy, Redis when Celery runs, and Airflow's processes. Used by the distributed
test's fixture and by the fault soak (``python3 dev.py soak``), outside pytest too.

Two executors: ``celery`` (api-server, scheduler, dag-processor, two Celery workers and two
triggerers, each worker and triggerer under a name of its own) and ``local`` (LocalExecutor,
one triggerer). The work directory, sources and destinations are on ``s3://`` through the
proxy either way. Everything stops when the context ends, also after a failure.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.distributed.services import MotoS3, Postgres, Redis, S3FaultProxy
from tests.helpers import TEST_API_KEY
from tests.system.stack import AirflowStack

BUCKET = "lake"
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer", "triggerer-2")


@dataclass
class Deployment:
    stack: AirflowStack
    emulator: RunningEmulator
    moto: MotoS3
    proxy: S3FaultProxy
    services: list[Any]
    started_in_seconds: float
    executor: str = "celery"

    def s3(self) -> Any:
        """s3fs straight to the S3 server (the test's own reads and writes bypass the faults)."""
        import s3fs

        return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=self.moto.url, skip_instance_cache=True)

    def s3_path(self, url: str) -> Any:
        from upath import UPath

        return UPath(url, key="testing", secret="testing", endpoint_url=self.moto.url)

    def diagnostics(self) -> str:
        lines = [service.state() for service in self.services]
        lines.append(f"s3 proxy: {self.proxy.requests} requests, {self.proxy.faults} faults injected")
        emulator = self.emulator.emulator
        lines.append(f"emulator calls {dict(emulator.calls)} stats {dict(emulator.stats)}")
        lines.append(self.stack.diagnostics())
        return "\n".join(lines)


def _components(executor: str) -> dict[str, list[str]]:
    if executor == "local":
        return {name: [name] for name in ("api-server", "scheduler", "dag-processor", "triggerer")}
    return {
        "api-server": ["api-server"],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        # Each worker and triggerer on "its own machine": no log server (they would share a
        # port here; task logs are on the shared local disk), a name of its own.
        **{w: ["celery", "worker", "--concurrency", "2", "--celery-hostname", w, "--skip-serve-logs"] for w in WORKERS},
        **{t: ["triggerer", "--skip-serve-logs"] for t in TRIGGERERS},
    }


def _airflow_env(executor: str, postgres: Postgres, redis: Redis | None, proxy: S3FaultProxy) -> dict[str, str]:
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if executor == "celery" else "LocalExecutor",
        # A worker lost with its machine: its task is failed (and retried) within seconds.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        # A lost triggerer: another (or its restart) takes its triggers after this many seconds.
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
        "AIRFLOW__CLAUDE_BATCH__WORK_DIR": f"s3://{BUCKET}/_claude_batch/",
        # S3 for the Amazon provider's file system (and s3fs) in every process: through the proxy.
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(8),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "6",
    }
    if executor == "celery":
        assert redis is not None
        env |= {
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.url}",
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.hostname.from_environment",
        }
    return env


@contextmanager
def start_deployment(
    home: Path,
    emulator: RunningEmulator,
    *,
    executor: str = "celery",
    dags: Mapping[str, str] = {},
    connection_extra: Mapping[str, Any] | None = None,
) -> Iterator[Deployment]:
    """Start the services and Airflow with ``dags`` (file name -> source) in its DAGs folder,
    the connection ``claude_batch_default`` pointing at the emulator; stop all of it after."""
    if executor not in ("celery", "local"):
        raise ValueError(f"executor must be 'celery' or 'local', not {executor!r}")
    started = time.monotonic()
    with ExitStack() as cleanup:
        postgres, moto = Postgres(home), MotoS3(home)
        redis = Redis(home) if executor == "celery" else None
        services: list[Any] = [s for s in (postgres, redis, moto) if s is not None]
        for service in services:
            cleanup.callback(service.stop)
            service.start()
        proxy = S3FaultProxy(moto.port)
        proxy.start()
        cleanup.callback(proxy.stop)
        import boto3

        boto3.client(
            "s3", endpoint_url=moto.url, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
        ).create_bucket(Bucket=BUCKET)

        connection: dict[str, Any] = {"conn_type": "claude_batch", "host": emulator.base_url, "password": TEST_API_KEY}
        if connection_extra:
            connection["extra"] = dict(connection_extra)
        stack = AirflowStack(
            home / "airflow",
            {
                "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(connection),
                **_airflow_env(executor, postgres, redis, proxy),
            },
            components=_components(executor),
            component_env={name: {"CLAUDE_BATCH_TEST_HOSTNAME": name} for name in (*WORKERS, *TRIGGERERS)}
            if executor == "celery"
            else None,
        )
        for name, source in dags.items():
            (stack.home / "dags" / name).write_text(source)
        cleanup.callback(stack.stop)
        deployment = Deployment(stack, emulator, moto, proxy, services, 0.0, executor)
        try:
            stack.start(timeout=180)
        except BaseException:
            print(deployment.diagnostics())
            raise
        deployment.started_in_seconds = time.monotonic() - started
        yield deployment
