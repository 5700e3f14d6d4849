"""``python -m tests.soak [--seeds N] [--first-seed S] [--shape local|celery] [--small]``: one
line per seed, then ``N seeds, M held``; exit 0 only when every seed held. ``--report FILE``
writes every seed's result and a tally per fault kind as JSON (docs/soak.md shows the last)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from tests.soak.runner import SeedResult, as_dict, describe_failure, run_seed, soak_deployment


def tally(results: list[SeedResult]) -> dict[str, dict[str, Any]]:
    """Per fault kind: seeds that drew it, seeds where it struck, and of those how many held."""
    drawn, fired, held = Counter[str](), Counter[str](), Counter[str]()
    for result in results:
        drawn.update(set(result.kinds_drawn))
        fired.update(set(result.kinds_fired))
        if result.held:
            held.update(set(result.kinds_fired))
    return {kind: {"drawn": drawn[kind], "fired": fired[kind], "held": held[kind]} for kind in sorted(drawn)}


def write_report(path: Path, shape: str, small: bool, seconds: float, results: list[SeedResult]) -> None:
    report = {
        "shape": shape,
        "small": small,
        "seconds": round(seconds),
        "held": sum(r.held for r in results),
        "seeds": [as_dict(r) for r in results],
        "kinds": tally(results),
        "limits": {name: sum(r.limits.get(name, 0) for r in results) for r in results for name in r.limits},
    }
    path.write_text(json.dumps(report, indent=1))


def seed_list(text: str) -> list[int]:
    """``6,9,10,14-50`` -> the seeds, in that order."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 dev.py soak", description=__doc__)
    parser.add_argument("--seeds", type=int, default=50, help="how many seeds (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=1, help="the first seed (default: %(default)s)")
    parser.add_argument("--shape", choices=("local", "celery"), default="local", help="LocalExecutor or Celery")
    parser.add_argument("--small", action="store_true", help="fewer rows per run (CI)")
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    parser.add_argument("--only", type=seed_list, help="these seeds instead, e.g. 6,9,10,14-50")
    args = parser.parse_args(argv)
    seeds = args.only or range(args.first_seed, args.first_seed + args.seeds)
    results: list[SeedResult] = []
    started = time.monotonic()
    every_body: dict[str, str] = {}
    home = Path(tempfile.mkdtemp(prefix="claude-batch-soak-"))
    with soak_deployment(home, args.shape) as deployment:
        print(f"deployment ({args.shape}) up in {deployment.started_in_seconds:.0f} s", flush=True)
        for seed in seeds:
            try:
                result = run_seed(deployment, seed, small=args.small, every_body=every_body)
            except Exception:  # the soak's own failure: reported as the seed's, the next seed runs
                result = SeedResult(seed, 0.0, [f"the soak failed: {traceback.format_exc()}"], [], [])
            results.append(result)
            verdict = "held" if result.held else "FAILED"
            print(
                f"seed {seed}: {verdict} in {result.seconds:.0f} s; faults: {', '.join(result.kinds_fired) or 'none'}",
                flush=True,
            )
            if not result.held:
                print(describe_failure(result, args.shape, args.small), flush=True)
            if args.report:  # after every seed: a soak stopped early still leaves its figures
                write_report(args.report, args.shape, args.small, time.monotonic() - started, results)
    held = sum(r.held for r in results)
    if held == len(results):
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"logs of the deployment kept in {home}", flush=True)
    print(f"{len(results)} seeds, {held} held", flush=True)
    return 0 if held == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
