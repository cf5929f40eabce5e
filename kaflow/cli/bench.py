"""`kaflow bench produce|consume|e2e`: load generators built on the Python client."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from kaflow.bench import (
    DEFAULT_MAX_DURATION_S,
    BenchResult,
    ConsumeSettings,
    E2eSettings,
    KeyDistribution,
    ProduceSettings,
    RunLimit,
    format_text,
    parse_key_distribution,
    to_json,
)
from kaflow.bench.histogram import RELATIVE_PRECISION
from kaflow.cli.arguments import SubParsers, add_client_options, non_negative_int, positive_int
from kaflow.cli.exit_codes import ExitCode, NodeUnreachableError, UsageError
from kaflow.cli.output import print_json_line

__all__ = ["register"]

_PRECISION_NOTE = (
    "Latency percentiles come from a log-bucketed histogram: values under 256 us are exact, "
    "larger ones exceed the exact nearest-rank value by less than "
    f"1/{round(1 / RELATIVE_PRECISION)} of it."
)
# The Python producer's defaults for linger.ms and batch.size.
_DEFAULT_LINGER_MS = 5
_DEFAULT_BATCH_SIZE = 16_384


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be more than 0")
    return value


def _non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be 0 or more")
    return value


def _key_distribution(text: str) -> KeyDistribution:
    try:
        return parse_key_distribution(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: SubParsers) -> None:
    """Add `bench` and its subcommands to the top-level parser."""
    parser = subparsers.add_parser(
        "bench",
        help="measure throughput and latency against a running cluster",
        description=(
            "Generate load with the Python client and report throughput, latency "
            "percentiles and client CPU time. " + _PRECISION_NOTE
        ),
    )
    modes = parser.add_subparsers(dest="bench_mode", metavar="MODE", required=True)
    _register_produce(modes)
    _register_consume(modes)
    _register_e2e(modes)


def _add_common(parser: argparse.ArgumentParser, *, count_option: bool) -> None:
    parser.add_argument("--topic", required=True, help="topic to benchmark")
    if count_option:
        bound = parser.add_mutually_exclusive_group(required=True)
        bound.add_argument("--records", type=positive_int, metavar="N", help="stop after N records")
        bound.add_argument(
            "--duration", type=_positive_number, metavar="SECONDS", help="stop after SECONDS"
        )
    parser.add_argument(
        "--max-duration",
        type=_positive_number,
        metavar="SECONDS",
        default=DEFAULT_MAX_DURATION_S,
        help=(
            "hard time limit in seconds, applied even with --records "
            f"(default: {DEFAULT_MAX_DURATION_S:g})"
        ),
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format: text (a few lines) or json (one object) (default: text)",
    )
    add_client_options(parser, top_level=False)


def _add_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--create",
        action="store_true",
        help="create the topic first, or use it as it is if it exists",
    )
    parser.add_argument(
        "--partitions",
        type=positive_int,
        metavar="N",
        help="partitions of the topic that --create makes (default: 1)",
    )


def _register_produce(modes: SubParsers) -> None:
    parser = modes.add_parser(
        "produce",
        help="send records and time their acknowledgements",
        description="Send records and report acknowledged throughput and send latency.",
    )
    _add_common(parser, count_option=True)
    _add_create_options(parser)
    parser.add_argument(
        "--record-size",
        type=non_negative_int,
        metavar="BYTES",
        default=100,
        help="bytes of each record value (default: 100)",
    )
    parser.add_argument(
        "--key-distribution",
        type=_key_distribution,
        metavar="none|uniform:K|sequential",
        default=parse_key_distribution("none"),
        help=(
            "record keys: none, uniform:K (a random one of K keys per record) or sequential "
            "(a new key per record) (default: none)"
        ),
    )
    parser.add_argument(
        "--in-flight",
        type=positive_int,
        metavar="N",
        default=1000,
        help="maximum number of sent records not yet acknowledged (default: 1000)",
    )
    parser.add_argument(
        "--linger-ms",
        type=non_negative_int,
        metavar="MS",
        default=_DEFAULT_LINGER_MS,
        help=(
            "producer linger.ms: milliseconds a batch waits for more records (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="BYTES",
        default=_DEFAULT_BATCH_SIZE,
        help="producer batch.size: bytes that close a batch (default: %(default)s)",
    )
    parser.add_argument(
        "--target-rate",
        type=_non_negative_number,
        metavar="RECORDS_PER_S",
        default=0.0,
        help="records per second to send, or 0 to send as fast as --in-flight allows (default: 0)",
    )
    parser.add_argument(
        "--idempotence",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use an idempotent producer (default: on)",
    )
    parser.set_defaults(handler=_run_produce)


def _register_consume(modes: SubParsers) -> None:
    parser = modes.add_parser(
        "consume",
        help="read every partition from the earliest offset",
        description=(
            "Read every partition of the topic from its log start offset and report throughput."
        ),
    )
    _add_common(parser, count_option=True)
    parser.set_defaults(handler=_run_consume)


def _register_e2e(modes: SubParsers) -> None:
    parser = modes.add_parser(
        "e2e",
        help="measure latency from send to consume at a fixed rate",
        description=(
            "Produce at a fixed rate for --duration seconds, read the records back in the "
            "same process and report the latency from each record's scheduled send time "
            "until the consumer read it."
        ),
    )
    _add_common(parser, count_option=False)
    _add_create_options(parser)
    parser.add_argument(
        "--rate",
        type=_positive_number,
        required=True,
        metavar="RECORDS_PER_S",
        help="records per second the producer sends",
    )
    parser.add_argument(
        "--duration",
        type=_positive_number,
        required=True,
        metavar="SECONDS",
        help="seconds the producer sends",
    )
    parser.add_argument(
        "--record-size",
        type=non_negative_int,
        metavar="BYTES",
        default=100,
        help="bytes of each record value, 16 or more (default: 100)",
    )
    parser.add_argument(
        "--linger-ms",
        type=non_negative_int,
        metavar="MS",
        default=0,
        help="producer linger.ms: milliseconds a batch waits for more records (default: 0)",
    )
    parser.set_defaults(handler=_run_e2e)


def _create_partitions(args: argparse.Namespace) -> int | None:
    if args.partitions is not None and not args.create:
        raise UsageError(f"--partitions {args.partitions} needs --create: add --create")
    if not args.create:
        return None
    return int(args.partitions or 1)


def _limit(args: argparse.Namespace) -> RunLimit:
    try:
        return RunLimit(args.records, args.duration, args.max_duration)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run_produce(args: argparse.Namespace) -> int:
    try:
        settings = ProduceSettings(
            topic=args.topic,
            limit=_limit(args),
            record_size=args.record_size,
            keys=args.key_distribution,
            in_flight=args.in_flight,
            linger_ms=args.linger_ms,
            batch_size=args.batch_size,
            target_rate=args.target_rate,
            idempotence=args.idempotence,
            create_partitions=_create_partitions(args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # Each handler imports its run module, so that other subcommands do not load aiohttp.
    from kaflow.bench.produce import run_produce

    return _execute(args, run_produce([args.bootstrap], settings, _retry_timeout_ms(args)))


def _run_consume(args: argparse.Namespace) -> int:
    settings = ConsumeSettings(topic=args.topic, limit=_limit(args))
    from kaflow.bench.consume import run_consume

    return _execute(args, run_consume([args.bootstrap], settings, _retry_timeout_ms(args)))


def _run_e2e(args: argparse.Namespace) -> int:
    try:
        settings = E2eSettings(
            topic=args.topic,
            rate=args.rate,
            duration_s=args.duration,
            max_duration_s=args.max_duration,
            record_size=args.record_size,
            linger_ms=args.linger_ms,
            create_partitions=_create_partitions(args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from kaflow.bench.e2e import run_e2e

    return _execute(args, run_e2e([args.bootstrap], settings, _retry_timeout_ms(args)))


def _retry_timeout_ms(args: argparse.Namespace) -> int:
    return int(args.timeout * 1000)


def _execute(args: argparse.Namespace, run: Coroutine[Any, Any, BenchResult]) -> int:
    """Run the benchmark, print its figures and return the exit status."""
    from kaflow.client import NodeUnreachableError as ClientNodeUnreachableError

    try:
        result = asyncio.run(run)
    except ClientNodeUnreachableError as exc:
        url = exc.urls[0] if exc.urls else args.bootstrap
        raise NodeUnreachableError(str(exc), url) from None

    if args.output == "json":
        print_json_line(to_json(result))
    else:
        sys.stdout.write(format_text(result) + "\n")
    sys.stdout.flush()

    if result.errors:
        print(
            f"error: {result.errors} records failed; first error: {result.first_error}",
            file=sys.stderr,
        )
        return ExitCode.BROKER_ERROR
    return ExitCode.OK
