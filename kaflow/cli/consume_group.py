"""`kaflow consume --group G` without --partition: read as a member of consumer group G.

The command joins G through :class:`kaflow.client.Consumer` and prints the
records of the partitions the group assigns to it, so several commands of
one group share the topic's partitions. It commits the next offset of each
printed partition once the records of a poll reached stdout. So a record can
be printed twice after a crash but is never skipped (at-least-once).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

from kaflow.cli.exit_codes import ExitCode, NodeUnreachableError
from kaflow.cli.http import NodeClient
from kaflow.cli.output import print_json_line
from kaflow.cli.positions import resolve_positions
from kaflow.cli.records import format_json_record, format_text_record
from kaflow.client import (
    CommitFailedError,
    Consumer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from kaflow.client import NodeUnreachableError as ClientUnreachableError

__all__ = ["run_group"]

logger = logging.getLogger(__name__)

# Records per poll; the node accepts at most 10000 per fetch.
POLL_MAX_RECORDS = 500
# How long one poll waits for records before the command checks whether it is done.
POLL_TIMEOUT_MS = 1000
# Without --follow, a member that the group gives no partition for this long stops.
IDLE_MEMBER_STOP_MS = 3000
# The client's long polls wait up to 30 s, and its request timeout must exceed that.
_LONG_POLL_MS = 30_000


class _StartPositions(ConsumerRebalanceListener):
    """Seek newly assigned partitions as the command without a group starts them.

    The group's committed offset wins (clamped into the log's range), then
    --from-time, then --offset. Revoked partitions need no commit here,
    because the command commits after printing each poll's records.
    """

    def __init__(self, client: NodeClient, args: argparse.Namespace, consumer: Consumer) -> None:
        self._client = client
        self._args = args
        self._consumer = consumer

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        topic = self._client.describe_topic(self._args.topic)
        for tp in sorted(assigned):
            (position,) = resolve_positions(
                self._client,
                topic,
                tp.partition,
                self._args.offset,
                self._args.from_time,
                self._args.group,
            )
            self._consumer.seek(tp, position.offset)


def run_group(args: argparse.Namespace, client: NodeClient) -> int:
    """Consume ``args.topic`` as a member of ``args.group``; return the exit status."""
    topic = client.describe_topic(args.topic)
    end_offsets = {
        int(info["partition"]): int(info["high_watermark"]) for info in topic["partitions"]
    }
    timeout_ms = int(args.timeout * 1000)
    try:
        consumer = Consumer(
            client.base_url,
            group_id=args.group,
            auto_offset_reset="earliest",
            request_timeout_ms=_LONG_POLL_MS + timeout_ms,
            retry_timeout_ms=timeout_ms,
        )
        try:
            consumer.subscribe([args.topic], _StartPositions(client, args, consumer))
            if not args.follow:
                _read_to_end(args, consumer, end_offsets)
                return ExitCode.OK
            # Ctrl-C or SIGTERM is the normal way to end --follow.
            signal.signal(signal.SIGTERM, _interrupt)
            with contextlib.suppress(KeyboardInterrupt):
                _follow(args, consumer)
            return ExitCode.OK
        finally:
            consumer.close()
    except ClientUnreachableError as exc:
        raise NodeUnreachableError(str(exc), client.base_url) from exc


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _read_to_end(args: argparse.Namespace, consumer: Consumer, end_offsets: dict[int, int]) -> None:
    """Print until every assigned partition reached the high watermark it had at the start."""
    remaining: int | None = args.count
    idle_since = time.monotonic()
    while remaining != 0:
        records = consumer.poll(POLL_TIMEOUT_MS, _page_size(remaining))
        remaining = _print_and_commit(args, consumer, records, remaining)
        assignment = consumer.assignment()
        if not assignment:
            if (time.monotonic() - idle_since) * 1000 >= IDLE_MEMBER_STOP_MS:
                return
            continue
        idle_since = time.monotonic()
        if all(consumer.position(tp) >= end_offsets.get(tp.partition, 0) for tp in assignment):
            return


def _follow(args: argparse.Namespace, consumer: Consumer) -> None:
    remaining: int | None = args.count
    while remaining != 0:
        records = consumer.poll(POLL_TIMEOUT_MS, _page_size(remaining))
        remaining = _print_and_commit(args, consumer, records, remaining)


def _page_size(remaining: int | None) -> int:
    return POLL_MAX_RECORDS if remaining is None else min(POLL_MAX_RECORDS, remaining)


def _print_and_commit(
    args: argparse.Namespace,
    consumer: Consumer,
    records: list[ConsumerRecord],
    remaining: int | None,
) -> int | None:
    if not records:
        return remaining
    next_offsets: dict[TopicPartition, int] = {}
    for record in records:
        _write(args, record)
        next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
    sys.stdout.flush()
    # Committing only after the records reached stdout gives at-least-once delivery.
    _commit(consumer, next_offsets)
    return None if remaining is None else remaining - len(records)


def _commit(consumer: Consumer, offsets: dict[TopicPartition, int]) -> None:
    if not offsets:
        return
    try:
        consumer.commit(offsets)
    except CommitFailedError as exc:
        # The partitions moved to another member, which starts from the last commit.
        print(f"note: {exc}", file=sys.stderr)


def _write(args: argparse.Namespace, record: ConsumerRecord) -> None:
    raw = _as_fetched(record)
    if args.output == "json":
        print_json_line(format_json_record(record.topic, record.partition, raw))
        return
    line = format_text_record(record.partition, raw, args.print_key, args.print_offset)
    sys.stdout.buffer.write(line + b"\n")


def _as_fetched(record: ConsumerRecord) -> dict[str, Any]:
    """Rebuild the fetch response's record object that the CLI's formatters take."""
    return {
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key_b64": _b64(record.key),
        "value_b64": _b64(record.value),
        "headers": [{"name": name, "value_b64": _b64(value)} for name, value in record.headers],
    }


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
