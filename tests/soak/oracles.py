"""The invariants checked after every seed, from oracles, never from logs:

* every input row landed exactly once, with the answer to its own request (the emulator's
  answers end with a digest of the request's text: a row holding another row's answer fails);
* no request content billed twice (the emulator's ledger by content);
* the answer store holds no answer under a wrong key (one answer text per key, and each
  answer is the one of the row it came from);
* no API key in any log, file of the lake or the work directory, or database row.

Each returns the violations it found, as sentences naming rows, keys and files.

:func:`limits` measures, without judging, how often a seed met the situations the known
limits are about (docs/guarantees.md): rows awaited from another run's batch, awaited rows
sent after all, and batches the API made that no run recorded (a create made twice, or
made and lost); each of them would pay twice only if the ledger shows it.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.land.partitions import read_partition
from airflow_provider_claude_batch.batching.state.run_dir import MANIFEST_NAME, task_folder_names
from airflow_provider_claude_batch.testing.emulator_requests import answer_digest
from tests.distributed.deployment import BUCKET, Deployment
from tests.soak.deployment_dags import PROMPT, destination

_ANSWER_COLUMN = "text"


def expected_digest(body: str) -> str:
    return answer_digest(PROMPT.format(body=body))


def _digest_of(answer: str | None) -> str | None:
    if not answer or " #" not in answer:
        return None
    return answer.rsplit(" #", 1)[1]


def landed_rows(deployment: Deployment, dag_id: str, day: str, rows: Mapping[str, str]) -> list[str]:
    """``rows``: row_id -> body, as the soak wrote them."""
    try:
        table = read_partition(deployment.s3_path(destination(dag_id, day)))
    except Exception as exc:  # no partition at all is a violation like any other
        return [f"{dag_id} {day}: no landed partition ({type(exc).__name__}: {exc})"]
    if "custom_id" not in table.column_names:
        return [f"{dag_id} {day}: nothing landed"]
    ids = table.column("custom_id").to_pylist()
    answers = table.column(_ANSWER_COLUMN).to_pylist()
    outcomes = table.column("result_type").to_pylist()
    problems = []
    missing = sorted(set(rows) - set(ids))
    twice = sorted(i for i, times in Counter(ids).items() if times > 1)
    strangers = sorted(set(ids) - set(rows))
    for label, found in (("missing", missing), ("landed twice", twice), ("not an input row", strangers)):
        if found:
            problems.append(f"{dag_id} {day}: {len(found)} rows {label}: {found[:5]}")
    # A row the API answered errored or expired in its last round (the seed draws 5% of each)
    # landed with its own outcome and no answer; any other row must hold its own answer.
    wrong = [
        i
        for i, answer, outcome in zip(ids, answers, outcomes, strict=True)
        if i in rows
        and not (outcome in ("errored", "expired") and answer is None)
        and _digest_of(answer) != expected_digest(rows[i])
    ]
    if wrong:
        problems.append(f"{dag_id} {day}: {len(wrong)} rows hold another request's answer (or none): {wrong[:5]}")
    return problems


def billed_twice(deployment: Deployment, documented: set[int] | None = None) -> list[str]:
    """Contents billed more than once, but for ``documented`` ones (a known limit's, counted
    apart by :func:`limits`)."""
    twice = {
        k: v for k, v in deployment.emulator.emulator.billing.billed_twice().items() if k not in (documented or ())
    }
    if not twice:
        return []
    return [f"{len(twice)} request contents billed more than once (times: {sorted(twice.values())[:10]})"]


def sent_after_all(deployment: Deployment, runs: Iterable[tuple[str, str]]) -> set[int]:
    """The ledger's contents of the rows the seed's runs awaited from another run's batch and
    then sent after all (it had no answer for them yet: its sender failed them transiently and
    sends them again in a round of its own). Both sends are billed: the documented limit "an
    awaited request whose sender failed transiently" (docs/guarantees.md)."""
    from airflow_provider_claude_batch.batching.state.run_dir import AWAITED_FOLDER
    from airflow_provider_claude_batch.testing.emulator_billing import stable_int
    from airflow_provider_claude_batch.testing.emulator_requests import parse_create

    s3 = deployment.s3()
    contents: set[int] = set()
    for dag_id, run_id in runs:
        folder = "/".join([BUCKET, "_claude_batch", *task_folder_names(dag_id, run_id, "submit", -1)])
        try:
            manifest = json.loads(s3.cat_file(f"{folder}/{MANIFEST_NAME}"))
        except FileNotFoundError:
            continue
        for record in manifest["batches"]:
            if not str(record["requests_file"]).startswith(f"{AWAITED_FOLDER}/"):
                continue
            lines = s3.cat_file(f"{folder}/{record['requests_file']}").splitlines()
            body = b'{"requests":[' + b",".join(line for line in lines if line.strip()) + b"]}"
            contents |= {stable_int(r.model, r.max_tokens, r.prompt_digest) for r in parse_create(body, None, 100_000)}
    return contents


def limits(deployment: Deployment, runs: Iterable[tuple[str, str]], documented: set[int]) -> dict[str, int]:
    """What the seed's runs (``(dag_id, run_id)``) met of the known limits, from their submit
    tasks' manifests and the emulator's batches (reset for each seed); ``documented``: the
    contents of rows sent after all (:func:`sent_after_all`)."""
    s3 = deployment.s3()
    recorded: set[str] = set()
    awaited = awaited_sent = 0
    for dag_id, run_id in runs:
        path = "/".join([BUCKET, "_claude_batch", *task_folder_names(dag_id, run_id, "submit", -1), MANIFEST_NAME])
        try:
            manifest = json.loads(s3.cat_file(path))
        except FileNotFoundError:
            continue
        recorded |= {record["batch_id"] for record in manifest["batches"] if record.get("batch_id")}
        reuse = manifest.get("reuse") or {}
        awaited += int(reuse.get("awaited", 0))
        awaited_sent += int(reuse.get("awaited_sent", 0))
    made = set(deployment.emulator.emulator.batch_ids())
    return {
        "batches made": len(made),
        "batches no run recorded": len(made - recorded),
        "rows awaited from another run's batch": awaited,
        "awaited rows sent after all": awaited_sent,
        "contents billed twice, awaited and sent after all (documented)": len(
            documented & set(deployment.emulator.emulator.billing.billed_twice())
        ),
    }


def _answer_files(deployment: Deployment) -> Iterable[str]:
    return [f for f in deployment.s3().glob(f"{BUCKET}/_claude_batch/_answers/p=*/*.parquet")]


def answer_store(deployment: Deployment, bodies: Mapping[str, str]) -> list[str]:
    """``bodies``: custom_id -> body of every row the soak has written (all seeds so far)."""
    s3 = deployment.s3()
    tables = []
    for path in _answer_files(deployment):
        with s3.open(path, "rb") as handle:
            tables.append(pq.read_table(handle, columns=["key", "custom_id", _ANSWER_COLUMN]))
    if not tables:
        return []
    store = pa.concat_tables(tables).to_pylist()
    digests_by_key: dict[bytes, set[str | None]] = {}
    problems = []
    for entry in store:
        digest = _digest_of(entry[_ANSWER_COLUMN])
        digests_by_key.setdefault(bytes(entry["key"]), set()).add(digest)
        body = bodies.get(entry["custom_id"])
        if body is not None and digest != expected_digest(body):
            problems.append(f"answer store: the answer kept for {entry['custom_id']} is another request's")
    mixed = [key.hex()[:16] for key, digests in digests_by_key.items() if len(digests) > 1]
    if mixed:
        problems.append(f"answer store: {len(mixed)} keys hold answers to different requests: {mixed[:5]}")
    return problems[:10]


def key_nowhere(deployment: Deployment, key: str, since: float) -> list[str]:
    """The key in no log written since ``since``, no object of the bucket, no database row."""
    problems = []
    needle = key.encode()
    for path in Path(deployment.stack.home).rglob("*"):
        if path.is_file() and path.stat().st_mtime >= since and needle in path.read_bytes():
            problems.append(f"the API key is in {path.name}")
    s3 = deployment.s3()
    for path in s3.find(BUCKET):
        with s3.open(path, "rb") as handle:
            if needle in handle.read():
                problems.append(f"the API key is in s3://{path}")
    postgres = next(s for s in deployment.services if s.name == "postgres")
    from tests.distributed.services import _which

    dump = subprocess.run(
        [_which("pg_dump"), "--data-only", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "airflow", "airflow"],
        capture_output=True,
        check=True,
    ).stdout
    if needle in dump:
        problems.append("the API key is in a row of the metadata database")
    return problems
