"""`kaflow consume`: print a topic's records, follow it, and commit a group's offsets."""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kaflow.cli.arguments import (
    SubParsers,
    add_client_options,
    group_name,
    make_client,
    non_negative_int,
    positive_int,
)
from kaflow.cli.consume_group import run_group
from kaflow.cli.exit_codes import ExitCode, NodeUnreachableError
from kaflow.cli.http import NodeClient
from kaflow.cli.output import print_json_line
from kaflow.cli.positions import (
    PartitionPosition,
    parse_start_offset,
    parse_timestamp_ms,
    resolve_positions,
)
from kaflow.cli.records import format_json_record, format_text_record
from kaflow.errors import RetriableError

__all__ = ["register"]

logger = logging.getLogger(__name__)

# Records per fetch request; the node accepts at most 10000.
FETCH_MAX_RECORDS = 500
# How long one --follow fetch waits at the high watermark for new records.
FOLLOW_MAX_WAIT_MS = 5000
# Pause between --follow fetches of a partition while the node is unreachable
# or returns a retriable error.
FOLLOW_RETRY_DELAY_S = 1.0


def register(subparsers: SubParsers) -> None:
    """Add `consume` to the top-level parser."""
    parser = subparsers.add_parser(
        "consume",
        help="print records of a topic",
        description=(
            "Print records of TOPIC from every partition (or --partition). Without --follow "
            "the command stops at the high watermark each partition had when it started. "
            "A group's committed offset takes precedence over --offset and --from-time, which "
            "then apply only to partitions the group has not committed. With --group (and "
            "without --partition) the command joins the consumer group and reads only the "
            "partitions the group assigns to it."
        ),
    )

    parser.add_argument("topic", help="topic to read")
    parser.add_argument(
        "--partition",
        type=non_negative_int,
        metavar="N",
        help="read only partition N (default: every partition)",
    )

    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--offset",
        type=parse_start_offset,
        metavar="N|earliest|latest",
        help="start at this offset in every selected partition (default: earliest)",
    )
    start.add_argument(
        "--from-time",
        type=parse_timestamp_ms,
        metavar="TIME",
        help=(
            "start at the first record with a timestamp at or after TIME: milliseconds since "
            "the Unix epoch or ISO-8601 such as 2024-05-01T12:00:00Z (local time without offset)"
        ),
    )

    parser.add_argument(
        "--count", type=positive_int, metavar="N", help="stop after printing N records"
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep waiting for new records until Ctrl-C, SIGTERM or --count records",
    )
    parser.add_argument(
        "--group",
        metavar="GROUP",
        type=group_name,
        help=(
            "join consumer group GROUP, read the partitions it assigns, start from its committed "
            "offsets and commit the next offset after printing; with --partition, read that "
            "partition without joining; GROUP is 1 to 255 letters, digits, '.', '_' or '-'"
        ),
    )

    parser.add_argument(
        "--print-key", action="store_true", help="text output: print the key before the value"
    )
    parser.add_argument(
        "--print-offset",
        action="store_true",
        help="text output: print partition=P and offset=O before the key and value",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help=(
            "output format: text (one value per line, columns separated by tabs) or json "
            "(one object per line with topic, partition, offset, timestamp, key, value and "
            "headers; bytes that are not UTF-8 appear as key_b64/value_b64) (default: text)"
        ),
    )

    add_client_options(parser, top_level=False)
    parser.set_defaults(handler=_run)


@dataclass
class _Delivery:
    """Prints fetched records, counts them against --count and commits the group's offsets."""

    client: NodeClient
    topic: str
    group: str | None
    output: str
    print_key: bool
    print_offset: bool
    remaining: int | None

    def done(self) -> bool:
        return self.remaining == 0

    def page_size(self) -> int:
        if self.remaining is None:
            return FETCH_MAX_RECORDS
        return min(FETCH_MAX_RECORDS, self.remaining)

    def deliver(self, partition: int, page: dict[str, Any]) -> int:
        """Print a fetched page and return the next offset to read from ``partition``."""
        records: list[dict[str, Any]] = page["records"]
        if not records:
            return int(page["next_offset"])

        printed = records if self.remaining is None else records[: self.remaining]
        for record in printed:
            self._write(partition, record)
        sys.stdout.flush()

        if len(printed) < len(records):
            next_offset = int(printed[-1]["offset"]) + 1
        else:
            next_offset = int(page["next_offset"])
        if self.remaining is not None:
            self.remaining -= len(printed)
        # Committing only after the records reached stdout gives at-least-once delivery.
        if self.group is not None:
            commit = {"topic": self.topic, "partition": partition, "offset": next_offset}
            self.client.commit_offsets(self.group, [commit])
        return next_offset

    def _write(self, partition: int, record: dict[str, Any]) -> None:
        if self.output == "json":
            print_json_line(format_json_record(self.topic, partition, record))
            return
        line = format_text_record(partition, record, self.print_key, self.print_offset)
        sys.stdout.buffer.write(line + b"\n")


def _run(args: argparse.Namespace) -> int:
    client = make_client(args)
    if args.group is not None and args.partition is None:
        return run_group(args, client)
    topic = client.describe_topic(args.topic)
    positions = resolve_positions(
        client, topic, args.partition, args.offset, args.from_time, args.group
    )
    delivery = _Delivery(
        client=client,
        topic=args.topic,
        group=args.group,
        output=args.output,
        print_key=args.print_key,
        print_offset=args.print_offset,
        remaining=args.count,
    )

    if not args.follow:
        _read_to_end(client, args.topic, positions, delivery)
        return ExitCode.OK
    # Ctrl-C or SIGTERM is the normal way to end --follow.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        _follow(client, args.topic, positions, delivery)
    return ExitCode.OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _read_to_end(
    client: NodeClient, topic: str, positions: list[PartitionPosition], delivery: _Delivery
) -> None:
    """Read each partition in turn up to the high watermark it had at the start."""
    for position in positions:
        while position.offset < position.end_offset and not delivery.done():
            page = client.fetch(
                topic, position.partition, position.offset, delivery.page_size(), max_wait_ms=0
            )
            next_offset = delivery.deliver(position.partition, page)
            if next_offset <= position.offset:
                # The node has nothing at this offset yet, so the partition is finished.
                break
            position.offset = next_offset


_PageOrError = dict[str, Any] | Exception


def _follow(
    client: NodeClient, topic: str, positions: list[PartitionPosition], delivery: _Delivery
) -> None:
    """Long-poll every partition on its own thread and print pages as they arrive.

    One thread per partition keeps a partition without new records from
    delaying the others. The bounded queue stops fetchers from running far
    ahead of what has been printed.
    """
    pages: queue.Queue[tuple[int, _PageOrError]] = queue.Queue(maxsize=2 * len(positions))
    stop = threading.Event()
    for position in positions:
        thread = threading.Thread(
            target=_fetch_forever,
            args=(client, topic, position, pages, stop),
            name=f"fetch-{topic}-{position.partition}",
            daemon=True,
        )
        thread.start()

    try:
        while not delivery.done():
            partition, item = pages.get()
            if isinstance(item, Exception):
                raise item
            delivery.deliver(partition, item)
    finally:
        stop.set()


def _fetch_forever(
    client: NodeClient,
    topic: str,
    position: PartitionPosition,
    pages: queue.Queue[tuple[int, _PageOrError]],
    stop: threading.Event,
) -> None:
    offset = position.offset
    failing = False
    while not stop.is_set():
        try:
            page = client.fetch(
                topic, position.partition, offset, FETCH_MAX_RECORDS, FOLLOW_MAX_WAIT_MS
            )
        except (RetriableError, NodeUnreachableError) as exc:
            if not failing:
                logger.warning(
                    "fetch failed, retrying every %g s topic=%s partition=%d error=%s",
                    FOLLOW_RETRY_DELAY_S,
                    topic,
                    position.partition,
                    exc,
                )
                failing = True
            stop.wait(FOLLOW_RETRY_DELAY_S)
            continue
        except Exception as exc:
            # Any other failure ends the command; the main thread re-raises it.
            pages.put((position.partition, exc))
            return

        if failing:
            logger.warning("fetch resumed topic=%s partition=%d", topic, position.partition)
            failing = False
        if page["records"]:
            pages.put((position.partition, page))
        offset = int(page["next_offset"])
