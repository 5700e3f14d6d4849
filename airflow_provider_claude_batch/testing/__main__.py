"""``python -m airflow_provider_claude_batch.testing --port 8765``: serve the emulator.

Every setting of :class:`EmulatorConfig` has a flag, and ``--help`` shows each one's default.
What changes while it runs (faults, scripted outcomes, the clock, settings) goes through the
``/_emulator/*`` control endpoints instead (docs/emulator.md).
"""

from __future__ import annotations

import argparse
import math

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.testing.emulator import DEFAULT_API_KEY, EmulatorConfig, serve_forever
from airflow_provider_claude_batch.testing.federation import FederationRule

PROG = "python -m airflow_provider_claude_batch.testing"
_RULE = FederationRule()

EPILOG = """\
control endpoints (no key needed), on the same address:
  GET  /_emulator/state     calls, events, batches, and what ended batches billed (tokens, $)
  GET  /_emulator/config    the settings it runs with (keys and identity tokens only counted)
  POST /_emulator/config    change settings: {"processing_seconds": 60, "refusal_fraction": 0.1}
  POST /_emulator/faults    inject a fault: {"endpoint": "create", "status": 529, "times": 2}
  POST /_emulator/outcomes  script outcomes: {"row-7": "errored:overloaded_error"}
  POST /_emulator/advance?seconds=3600   move the emulator's clock forward
  POST /_emulator/reset     forget every batch, fault, outcome and counter
See docs/emulator.md for running your own DAG against it."""


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction must be between 0 and 1, not {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more (inf: never), not {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _reply_chars(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        chars = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a length or LOW-HIGH, e.g. 50-500, not {text}") from None
    if not 1 <= chars[0] <= chars[1]:
        raise argparse.ArgumentTypeError(f"lengths must be 1 <= LOW <= HIGH, not {text}")
    return chars


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, each help line ending with its default."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a local emulator of Claude's Message Batches API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _serving(parser.add_argument_group("serving"))
    _time_and_limits(parser.add_argument_group("time and limits"))
    _rate_limits(parser.add_argument_group("request rate limit"))
    _answers(parser.add_argument_group("answers (fractions of requests, drawn by a hash: runs replay)"))
    _federation(parser.add_argument_group("keyless sign-in (POST /v1/oauth/token)"))
    return parser


def _serving(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--host", metavar="HOST", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add(
        "--port",
        metavar="PORT",
        type=int,
        default=8765,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    add(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key, repeatable (default: {DEFAULT_API_KEY})",
    )
    add(
        "--state-file",
        metavar="PATH",
        help="JSON file keeping the batches across restarts, read at start (default: none)",
    )
    add(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="server log level (default: %(default)s)",
    )
    add(
        "--prices",
        metavar="JSON",
        help="price overrides for the billed dollars of /_emulator/state: JSON or a JSON file's path, "
        "as [claude_batch] prices takes them (default: the provider's price table)",
    )
    add(
        "--list-lag-seconds",
        metavar="S",
        type=float,
        default=0.0,
        help="a new batch is missing from list for S seconds (retrieve finds it): a stale listing (default: 0)",
    )


def _time_and_limits(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add(
        "--processing-seconds",
        metavar="SECONDS",
        type=_seconds,
        default=5.0,
        help="from create until a batch ends; inf: never, it expires after 24 h (default: %(default)s)",
    )
    add(
        "--cancel-seconds",
        metavar="SECONDS",
        type=_seconds,
        default=1.0,
        help="from a cancel until the batch ends (default: %(default)s)",
    )
    add(
        "--latency-seconds",
        metavar="SECONDS",
        type=_seconds,
        default=0.0,
        help="added to every API call (default: %(default)s)",
    )
    add(
        "--gradual",
        action="store_true",
        help="end requests one by one over the processing time; the real API reports them all "
        "at the end (default: off)",
    )
    add(
        "--max-requests",
        metavar="N",
        type=_positive,
        default=limits.MAX_REQUESTS_PER_BATCH,
        help="requests per batch (default: %(default)s, the API's)",
    )
    add(
        "--max-bytes",
        metavar="BYTES",
        type=_positive,
        default=limits.MAX_BYTES_PER_BATCH,
        help="bytes per create body (default: %(default)s, the API's)",
    )
    add(
        "--queue-limit",
        metavar="N",
        type=_positive,
        default=None,
        help="the organisation's batch queue: a create that would put more than N requests in batches "
        "still processing gets 429 rate_limit_error (default: no limit)",
    )
    add(
        "--no-results-ranges",
        dest="results_ranges",
        action="store_false",
        help="ignore Range headers of results downloads and send the whole file again (default: ranges served)",
    )


def _rate_limits(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add(
        "--batch-rate-limit",
        metavar="N",
        type=_positive,
        default=None,
        help="the Message Batches endpoints' request rate limit: beyond N calls a minute (create, retrieve, "
        "list, results, cancel, delete together) a call gets 429 rate_limit_error with retry-after "
        "(default: no limit)",
    )
    add(
        "--batch-rate-window-seconds",
        metavar="S",
        type=_positive_float,
        default=60.0,
        help="the window --batch-rate-limit counts calls in (default: %(default)s, a minute as the API's)",
    )


def _answers(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    for flag, what in (
        ("--errored-fraction", "requests that end errored (api_error, transient: resubmitted)"),
        ("--expired-fraction", "requests that end expired"),
        ("--invalid-output-fraction", "structured answers that do not validate against their schema"),
        ("--refusal-fraction", 'structured answers refused (stop_reason "refusal")'),
        ("--truncated-fraction", 'structured answers cut at max_tokens (stop_reason "max_tokens")'),
    ):
        add(flag, type=_fraction, default=0.0, metavar="FRACTION", help=f"{what} (default: %(default)s)")
    add(
        "--reply-chars",
        type=_reply_chars,
        metavar="LOW-HIGH",
        help="length of free-text replies, a range or one length, e.g. 50-500 (default: the tag and three words)",
    )
    add(
        "--answer-digest",
        action="store_true",
        help="end free-text answers with '#' and a digest of the request's last user text (default: off)",
    )


def _federation(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add(
        "--trust-identity-token",
        action="append",
        default=[],
        metavar="JWT",
        help="an identity token the federation rule accepts, repeatable (default: none)",
    )
    add(
        "--federation-rule-id",
        metavar="ID",
        default=_RULE.rule_id,
        help="the federation rule's id (default: %(default)s)",
    )
    add(
        "--organization-id",
        metavar="UUID",
        default=_RULE.organization_id,
        help="the rule's organization (default: %(default)s)",
    )
    add(
        "--access-token-seconds",
        metavar="SECONDS",
        type=_positive,
        default=_RULE.token_seconds,
        help="lifetime of an exchanged access token (default: %(default)s)",
    )


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The emulator's settings from parsed arguments."""
    return EmulatorConfig(
        api_keys=frozenset(args.api_keys or [DEFAULT_API_KEY]),
        processing_seconds=args.processing_seconds,
        cancel_seconds=args.cancel_seconds,
        latency_seconds=args.latency_seconds,
        max_requests_per_batch=args.max_requests,
        max_bytes_per_batch=args.max_bytes,
        queue_limit=args.queue_limit,
        batch_rate_limit=args.batch_rate_limit,
        batch_rate_window_seconds=args.batch_rate_window_seconds,
        list_lag_seconds=args.list_lag_seconds,
        answer_digest=args.answer_digest,
        results_ranges=args.results_ranges,
        errored_fraction=args.errored_fraction,
        expired_fraction=args.expired_fraction,
        invalid_output_fraction=args.invalid_output_fraction,
        refusal_fraction=args.refusal_fraction,
        truncated_fraction=args.truncated_fraction,
        reply_chars=args.reply_chars,
        gradual_ending=args.gradual,
        state_file=args.state_file,
        prices=args.prices,
        federation=FederationRule(
            rule_id=args.federation_rule_id,
            organization_id=args.organization_id,
            trusted_identity_tokens=frozenset(args.trust_identity_token),
            token_seconds=args.access_token_seconds,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.errored_fraction + args.expired_fraction > 1:
        parser.error("--errored-fraction and --expired-fraction add up to more than 1")
    if args.invalid_output_fraction + args.refusal_fraction + args.truncated_fraction > 1:
        parser.error("--invalid-output-fraction, --refusal-fraction and --truncated-fraction add up to more than 1")
    try:
        PriceTable.load(args.prices)
    except ClaudeBatchInputError as exc:
        parser.error(f"--prices: {exc}")
    serve_forever(config_from(args), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
