"""Run every benchmark side by side and write docs/benchmarks.md.

python3 dev.py bench                 # full sizes (about 15 minutes on 2 cores)
python3 dev.py bench --smoke         # tiny sizes: proves the scripts run (CI), no table
python3 dev.py bench --only p1 --p1-rows 100000 --runs 1   # one size while developing, no table
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, Series, machine_line, repeat, run_case
from benchmarks.emulator_process import API_KEY, configure, connection_env, emulator_process

FULL = {
    "p1_rows": [100_000, 1_000_000],
    "p2_rows": 1_000_000,
    "p3_rows": 100_000,
    "p4": [(100, 100), (1000, 10)],
    "p4_seconds": 20.0,
    "latency": 0.2,
    "p5_rows": 1_000_000,
    "p6_answers": 10_000_000,
    "p6_queries": 1_000_000,
    "p6_rows": 1_000_000,
}
SMOKE = {
    "p1_rows": [300],
    "p2_rows": 2_000,
    "p3_rows": 500,
    "p4": [(2, 3)],
    "p4_seconds": 1.0,
    "latency": 0.01,
    "p5_rows": 2_000,
    "p6_answers": 20_000,
    "p6_queries": 2_000,
    "p6_rows": 2_000,
}


def bench_p1(sizes: dict, runs: int, tmp: Path) -> list[tuple[int, dict[str, Series]]]:
    from benchmarks.p1_results import prepare

    out = []
    for rows in sizes["p1_rows"]:
        with emulator_process("--max-requests", str(max(rows, 100_000)), "--max-bytes", str(2**31)) as url:
            batch_id, raw = prepare(url, rows, tmp)
            env = connection_env(url)
            cases = {
                "ours, from the emulator over HTTP": ("ours", "-"),
                "ours, from the saved file": ("ours", str(raw)),
                "the wire alone: SDK stream to a file, no parse": ("download", "-"),
                "tutorial, from the emulator over HTTP": ("tutorial", "-"),
                "tutorial, from the saved file": ("tutorial", str(raw)),
                "floor: pyarrow.json.read_json of the file": ("floor", str(raw)),
            }
            out.append(
                (
                    rows,
                    {
                        name: repeat(
                            f"P1 {rows} {name}",
                            runs,
                            lambda a=args, b=batch_id, e=env, n=rows: run_case(
                                "benchmarks.p1_results", "case", a[0], b, a[1], str(n), env=e
                            ),
                        )
                        for name, args in cases.items()
                    },
                )
            )
        raw.unlink()
    return out


def bench_p2(sizes: dict, runs: int, tmp: Path) -> dict[str, Series]:
    from benchmarks.p2_render import make_input

    source = make_input(tmp / "input.parquet", sizes["p2_rows"])
    return {
        f"{label}": repeat(
            f"P2 {label}", runs, lambda c=columns: run_case("benchmarks.p2_render", "case", str(source), c)
        )
        for label, columns in (
            ("requests only (input_columns=None)", "none"),
            ("requests + input columns (default)", "all"),
        )
    }


def bench_p3(sizes: dict, runs: int, tmp: Path) -> dict[str, Series]:
    from benchmarks.p3_create import make_chunk

    chunk = make_chunk(tmp / "chunk.jsonl", sizes["p3_rows"])
    results = {}
    with emulator_process("--processing-seconds", "inf", "--max-bytes", str(2**31)) as url:
        env = connection_env(url)
        for label, impl in (("our hook (JSONL bytes as they are)", "ours"), ("SDK create(requests=[dicts])", "sdk")):
            results[label] = repeat(
                f"P3 {label}", runs, lambda i=impl: run_case("benchmarks.p3_create", "case", i, str(chunk), env=env)
            )
    return results


def bench_p4(sizes: dict, runs: int, tmp: Path) -> list[tuple[str, dict[str, Series]]]:
    total = max(t * b for t, b in sizes["p4"])
    out = []
    with emulator_process("--processing-seconds", "inf") as url:
        env = connection_env(url)
        ids = []
        with httpx.Client(base_url=url, headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}) as client:
            for _ in range(total):
                request = {
                    "custom_id": "r",
                    "params": {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
                }
                ids.append(client.post("/v1/messages/batches", json={"requests": [request]}).json()["id"])
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids))
        configure(url, latency_seconds=sizes["latency"])
        for triggers, per_trigger in sizes["p4"]:
            label = f"{triggers} triggers x {per_trigger} batches"
            series = {}
            for name, impl in (
                ("ours: shared list pages (msgspec), one client per loop", "ours"),
                ("to_thread(sync retrieve) per batch", "threads"),
            ):
                series[name] = repeat(
                    f"P4 {label} {name}",
                    runs,
                    lambda i=impl, t=triggers, b=per_trigger: run_case(
                        "benchmarks.p4_triggerer",
                        "case",
                        i,
                        str(t),
                        str(b),
                        str(sizes["p4_seconds"]),
                        str(ids_file),
                        env=env,
                    ),
                )
            out.append((label, series))
    return out


def bench_p5(sizes: dict, runs: int, tmp: Path) -> dict[str, Series]:
    from benchmarks.p5_typed_answers import make_input

    results = {}
    for kind, label in (
        ("classification", "classification: enum label + confidence"),
        ("extraction", "extraction: nested object, list of objects, nullable field"),
    ):
        source = make_input(tmp / f"answers-{kind}.parquet", sizes["p5_rows"], kind)
        results[label] = repeat(
            f"P5 {label}", runs, lambda s=source, k=kind: run_case("benchmarks.p5_typed_answers", "case", str(s), k)
        )
    return results


def bench_p6(sizes: dict, runs: int, tmp: Path) -> dict[str, Any]:
    """Lookups against the cached store, then keys and the reuse plan at submit."""
    from benchmarks.p2_render import make_input
    from benchmarks.p6_answer_store import build_store, prepare_rerun, store_meta

    store = build_store(sizes["p6_answers"], sizes["p6_queries"])
    results: dict[str, Series] = {}
    for label, args in (
        ("lookup", ()),
        ("lookup, then fetch of the hits' answers", ("fetch",)),
    ):
        results[label] = repeat(
            f"P6 {label}", runs, lambda a=args: run_case("benchmarks.p6_answer_store", "lookup", str(store), *a)
        )
    source = make_input(tmp / "p6-input.parquet", sizes["p6_rows"])
    rerun = prepare_rerun(store, source, tmp)
    staged_dir = tmp / "p6-staged"
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests
    from benchmarks.p6_answer_store import _limits, _spec

    stage_requests(source, _spec(), _limits(), staged_dir, input_columns=None)
    results["keys: keys_of_column over rendered lines"] = repeat(
        "P6 keys", runs, lambda: run_case("benchmarks.p6_answer_store", "keys", str(staged_dir))
    )
    for label, args in (
        ("render alone (stage_requests, no keys)", ("render",)),
        ("render + keys (stage_requests(keys=True))", ("keys",)),
        (
            "first run: render + keys + reuse plan, nothing reused",
            ("plan", str(store / "work"), str(store)),
        ),
        ("rerun: render + keys + reuse plan, 90% reused", ("plan", str(rerun), str(store))),
    ):
        results[label] = repeat(
            f"P6 {label}", runs, lambda a=args: run_case("benchmarks.p6_answer_store", "stage", str(source), *a)
        )
    return {"store": store_meta(store), "series": results}


def write_report(
    path: Path,
    runs: int,
    p1: list,
    p2: dict,
    p3: dict,
    p4: list,
    p5: dict | None = None,
    p6: dict | None = None,
    *,
    p7: dict | None = None,
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} with `python3 dev.py bench`: median of {runs} runs, "
        "(min-max) in brackets. Every case runs in its own process (peak RSS is that process's own) against the "
        "local emulator running in another process.",
        "",
        f"Machine: {machine_line()}.",
        "",
        "## P1: batch results -> Parquet",
        "",
        "Results mix: about 97% succeeded (50-500 character answers with usage), 2% errored, 1% expired. "
        "Imports (pandas, pyarrow, anthropic, Airflow) happen before the clock starts in every case.",
        "",
    ]
    for rows, series in p1:
        lines += [f"### {rows:,} results", "", "| path | seconds | peak RSS (MB) |", "|---|---|---|"]
        lines += [f"| {name} | {s.cell('seconds')} | {s.cell('rss_mb', '{:.0f}')} |" for name, s in series.items()]
        ours, tutorial, floor = (
            series[k].median("seconds")
            for k in (
                "ours, from the saved file",
                "tutorial, from the saved file",
                "floor: pyarrow.json.read_json of the file",
            )
        )
        ours_http, tutorial_http = (
            series[k].median("seconds")
            for k in ("ours, from the emulator over HTTP", "tutorial, from the emulator over HTTP")
        )
        lines += [
            "",
            f"From the file: ours is {tutorial / ours:.1f}x faster than the tutorial's path and "
            f"{ours / floor:.2f}x the floor; over HTTP {tutorial_http / ours_http:.1f}x faster, and "
            f"{ours_http / ours:.2f}x ours from the file.",
            "",
        ]
    lines += [
        "## P2: rendering 1M rows from Parquet into request chunks of 100k",
        "",
        "| case | rows/s | seconds | peak RSS (MB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {s.cell('rows_per_second', '{:,.0f}')} | {s.cell('seconds')} | {s.cell('rss_mb', '{:.0f}')} |"
        for name, s in p2.items()
    ]
    lines += ["", "## P3: creating one 100k-request batch", "", "| path | seconds | peak RSS (MB) |", "|---|---|---|"]
    lines += [f"| {name} | {s.cell('seconds')} | {s.cell('rss_mb', '{:.0f}')} |" for name, s in p3.items()]
    lines += ["", "## P4: batch waits on one triggerer event loop (200 ms latency per call)", ""]
    for label, series in p4:
        lines += [
            f"### {label}",
            "",
            "| polling | batch states/s | API calls/s | loop lag p50 (ms) | loop lag p99 (ms) | CPU % |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {s.cell('polls_per_second', '{:,.0f}')} | {s.cell('api_calls_per_second', '{:.0f}')} | "
            f"{s.cell('lag_p50_ms', '{:.1f}')} | "
            f"{s.cell('lag_p99_ms', '{:.1f}')} | {s.cell('cpu_percent', '{:.0f}')} |"
            for name, s in series.items()
        ]
        names = list(series)
        lines += [
            "",
            # The baseline's states are counted per finished round; its retrieves per second
            # (each one a state) are the fairer measure of what it refreshed.
            f"Ratio: {series[names[0]].median('polls_per_second') / series[names[1]].median('api_calls_per_second'):.1f}x "
            "the batch states per second (against the baseline's retrieves per second).",
            "",
        ]
    if p5:
        lines += [
            "## P5: typed answers, 1M answers -> validated, typed columns (blocks of 65,536)",
            "",
            "About 97% valid answers, 2% invalid, 0.5% refused, 0.5% truncated, streamed from Parquet. The "
            "machine is shared: rows per CPU second and the 1-minute load average during the run say how much "
            "of the wall time was spent waiting for a core.",
            "",
            "| schema | rows/s | rows per CPU second | seconds | peak RSS (MB) | load |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {s.cell('rows_per_second', '{:,.0f}')} | {s.cell('rows_per_cpu_second', '{:,.0f}')} | "
            f"{s.cell('seconds')} | {s.cell('rss_mb', '{:.0f}')} | {s.cell('load_1min', '{:.1f}')} |"
            for name, s in p5.items()
        ]
        lines += [""]
    if p6:
        lines += _p6_report(p6)
    if p7:
        lines += _p7_report(p7)
    analysis = ROOT / "benchmarks" / "ANALYSIS.md"
    if analysis.exists():
        lines += [analysis.read_text().strip(), ""]
    path.write_text("\n".join(lines))


def bench_p7(runs: int, tmp: Path) -> dict[str, Any]:
    from benchmarks.p7_import_cost import added, bench

    series = bench(runs, tmp)
    return {"series": {name: s.runs for name, s in series.items()}, "added": added(series)}


def _p7_report(p7: dict) -> list[str]:
    from benchmarks.p7_import_cost import CASES

    series = {name: Series(name, runs) for name, runs in p7["series"].items()}
    added = p7["added"]
    lines = [
        "## P7: what the provider adds to `import airflow` and to parsing a DAG file",
        "",
        "Each run is a fresh interpreter: `import airflow`, then the DAG file parsed as a DAG processor does "
        "(`DagBag`, then `DagSerialization.to_dict`). Airflow alone is the same interpreter with the provider's "
        "distribution hidden from `importlib.metadata` (as if not installed), parsing a DAG of the same shape "
        "built from `EmptyOperator`. RSS is the resident memory after each step. The machine is shared: CPU "
        "seconds are the steadier figure.",
        "",
        "| case | import s | import CPU s | RSS after import (MB) | parse s | parse CPU s | RSS after parse (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in CASES:
        s = series[name]
        lines.append(
            f"| {name} | {s.cell('import_seconds')} | {s.cell('import_cpu_seconds')} | "
            f"{s.cell('import_rss_mb', '{:.0f}')} | {s.cell('parse_seconds')} | {s.cell('parse_cpu_seconds')} | "
            f"{s.cell('parse_rss_mb', '{:.0f}')} |"
        )
    lines += [
        "",
        f"Added by the provider (medians): at start {added['start_cpu_seconds']:+.2f} CPU s "
        f"({added['start_seconds']:+.2f} s wall), {added['start_rss_mb']:+.0f} MB; parsing the example "
        f"{added['parse_cpu_seconds']:+.2f} CPU s ({added['parse_seconds']:+.2f} s wall), "
        f"{added['parse_rss_mb']:+.0f} MB. Goal: under 0.1 s at start, 0.3 s at parse.",
        "",
    ]
    return lines


def _p6_report(p6: dict) -> list[str]:
    store, series = p6["store"], p6["series"]
    lines = [
        f"## P6: the answer store, {store['queries']:,} keys against {store['answers']:,} answers",
        "",
        f"The store: {store['answers']:,} answers of {store['text_bytes_per_answer']:.0f} bytes of text on average "
        f"(plus the same text as JSON content blocks), added by the store's own `add` in {store['landings']} landings "
        f"({store['files_before_compaction']:,} files), then one `compact` into {store['files']} files. "
        f"{store['expected_hits'] / store['queries']:.0%} of the looked-up keys are stored; max age 30 days. "
        "The machine is shared: CPU seconds and the 1-minute load average say how much of the wall time "
        "was spent waiting for a core. In the lookup-then-fetch row, rows/s is the lookup's.",
        "",
        "| case | rows/s | seconds | CPU seconds | peak RSS (MB) | load |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in series.items():
        lines.append(
            f"| {name} | {s.cell('rows_per_second', '{:,.0f}')} | {s.cell('seconds')} | {s.cell('cpu_seconds')} | "
            f"{s.cell('rss_mb', '{:.0f}')} | {s.cell('load_1min', '{:.1f}')} |"
        )
    fetch = series.get("lookup, then fetch of the hits' answers")
    if fetch is not None and fetch.runs:
        lines += [
            "",
            f"Fetch of the {fetch.runs[0]['fetched']:,} answers found (the columns the reuse plan reads), after the "
            f"lookup: {fetch.cell('answers_per_second', '{:,.0f}')} answers/s, {fetch.cell('fetch_seconds')} s.",
        ]
    plan = {name.split(":")[0]: s for name, s in series.items() if "reuse plan" in name}
    if plan:
        lines += [
            "",
            "The reuse plan alone (after staging): "
            + "; ".join(f"{name} {s.cell('plan_seconds')} s" for name, s in plan.items())
            + ".",
        ]
    lines += [
        "",
        f"Store on disk after compaction: {store['bytes'] / 2**20:,.0f} MiB, "
        f"**{store['bytes_per_answer']:.0f} bytes per answer** (zstd). Building it: `add` "
        f"{store['add_answers_per_second']:,.0f} answers/s, `compact` {store['compact_seconds']:.0f} s.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run, no report")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["p1", "p2", "p3", "p4", "p5", "p6", "p7"], action="append")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from docs/benchmarks.json")
    parser.add_argument(
        "--p1-rows", type=int, action="append", help="P1 at these sizes only (development: prints, writes no report)"
    )
    args = parser.parse_args()
    target = ROOT / "docs" / "benchmarks.md"
    saved = ROOT / "docs" / "benchmarks.json"
    if args.report_only:
        data = json.loads(saved.read_text())
        write_report(target, data["runs"], *_load(data), p7=data.get("p7"))
        print(f"wrote {target}")
        return
    sizes, runs = (SMOKE, 1) if args.smoke else (FULL, args.runs)
    if args.p1_rows:
        sizes = {**sizes, "p1_rows": args.p1_rows}
    every = {"p1", "p2", "p3", "p4", "p5", "p6", "p7"}
    only = set(args.only or every)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    with tempfile.TemporaryDirectory(prefix="claude-batch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        p1 = bench_p1(sizes, runs, tmp) if "p1" in only else []
        p2 = bench_p2(sizes, runs, tmp) if "p2" in only else {}
        p3 = bench_p3(sizes, runs, tmp) if "p3" in only else {}
        p4 = bench_p4(sizes, runs, tmp) if "p4" in only else []
        p5 = bench_p5(sizes, runs, tmp) if "p5" in only else {}
        p6 = bench_p6(sizes, runs, tmp) if "p6" in only else {}
        p7 = bench_p7(runs, tmp) if "p7" in only else {}
    if args.smoke or args.p1_rows:
        return
    if only != every:
        if not saved.exists():
            print("partial run: no saved results to merge with, so no report written")
            return
        # A partial run replaces its parts of the saved results; the others are kept.
        old_p1, old_p2, old_p3, old_p4, old_p5, old_p6 = _load(json.loads(saved.read_text()))
        p1, p2 = p1 if "p1" in only else old_p1, p2 if "p2" in only else old_p2
        p3, p4 = p3 if "p3" in only else old_p3, p4 if "p4" in only else old_p4
        p5 = p5 if "p5" in only else old_p5
        p6 = p6 if "p6" in only else old_p6
        p7 = p7 if "p7" in only else json.loads(saved.read_text()).get("p7", {})
    target.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps({**_dump(runs, p1, p2, p3, p4, p5, p6), "p7": p7}, indent=1))
    write_report(target, runs, p1, p2, p3, p4, p5, p6, p7=p7)
    print(f"wrote {target}")


def _dump(runs: int, p1: list, p2: dict, p3: dict, p4: list, p5: dict, p6: dict) -> dict:
    def series(group: dict) -> dict:
        return {name: s.runs for name, s in group.items()}

    return {
        "runs": runs,
        "machine": machine_line(),
        "p1": [[rows, series(group)] for rows, group in p1],
        "p2": series(p2),
        "p3": series(p3),
        "p4": [[label, series(group)] for label, group in p4],
        "p5": series(p5),
        "p6": {"store": p6["store"], "series": series(p6["series"])} if p6 else {},
    }


def _load(data: dict) -> tuple[list, dict, dict, list, dict, dict]:
    def series(group: dict) -> dict:
        return {name: Series(name, runs) for name, runs in group.items()}

    return (
        [(rows, series(group)) for rows, group in data["p1"]],
        series(data["p2"]),
        series(data["p3"]),
        [(label, series(group)) for label, group in data["p4"]],
        series(data.get("p5", {})),
        {"store": data["p6"]["store"], "series": series(data["p6"]["series"])} if data.get("p6") else {},
    )


if __name__ == "__main__":
    main()
