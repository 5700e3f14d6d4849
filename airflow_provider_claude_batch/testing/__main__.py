"""``python -m airflow_provider_claude_batch.testing --port 8765``: serve the emulator."""

from __future__ import annotations

import argparse
import math

from airflow_provider_claude_batch.testing.emulator import DEFAULT_API_KEY, EmulatorConfig, serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_claude_batch.testing",
        description="Serve a local emulator of Claude's Message Batches API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help=f"accepted API key (repeatable; default {DEFAULT_API_KEY!r})",
    )
    parser.add_argument("--processing-seconds", type=float, default=5.0, help="time until a batch ends (inf: never)")
    parser.add_argument("--cancel-seconds", type=float, default=1.0)
    parser.add_argument("--latency-seconds", type=float, default=0.0, help="added to every API call")
    parser.add_argument("--max-requests", type=int, default=None, help="requests per batch limit")
    parser.add_argument("--max-bytes", type=int, default=None, help="bytes per create body limit")
    parser.add_argument("--errored-fraction", type=float, default=0.0)
    parser.add_argument("--expired-fraction", type=float, default=0.0)
    parser.add_argument("--reply-chars", default=None, help="reply length range, e.g. 50-500")
    parser.add_argument(
        "--gradual",
        action="store_true",
        help="requests end one by one over the processing time (the real API reports them all at the end)",
    )
    parser.add_argument(
        "--state-file", default=None, help="JSON file that keeps the batches across restarts (read at start)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        api_keys=frozenset(args.api_keys or [DEFAULT_API_KEY]),
        processing_seconds=math.inf if math.isinf(args.processing_seconds) else args.processing_seconds,
        cancel_seconds=args.cancel_seconds,
        latency_seconds=args.latency_seconds,
        errored_fraction=args.errored_fraction,
        expired_fraction=args.expired_fraction,
        gradual_ending=args.gradual,
        state_file=args.state_file,
    )
    if args.reply_chars:
        low, _, high = args.reply_chars.partition("-")
        config.reply_chars = (int(low), int(high or low))
    if args.max_requests:
        config.max_requests_per_batch = args.max_requests
    if args.max_bytes:
        config.max_bytes_per_batch = args.max_bytes
    serve_forever(config, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
