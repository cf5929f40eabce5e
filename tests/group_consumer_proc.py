"""A consumer group member in its own process, for tests that kill, stop and restart members.

Run as ``python -m tests.group_consumer_proc --bootstrap URL[,URL...] --group G
--topic T``. It subscribes with :class:`kaflow.client.AsyncConsumer`,
processes records by printing them, commits after each batch and in the
revoke callback, and prints one JSON object per line on stdout:

- ``{"event": "joined" | "assigned" | "revoked" | "lost", "partitions": [...]}``
- ``{"event": "record", "partition", "offset", "value"}``
- ``{"event": "commit", "offsets": {"P": next_offset}, "sent_as"}`` after a commit
  succeeded; ``sent_as`` is the member id the commit carried
- ``{"event": "commit_failed", "offsets", "sent_as", "error"}`` after CommitFailedError
- ``{"event": "stopping"}`` right before it stops itself with SIGSTOP
- ``{"event": "closed"}`` after close() returned (on SIGTERM or --exit-after)

Every line also has ``member_id``, ``member_epoch``, ``group_epoch`` and
``t``, the ``time.monotonic()`` value, which is comparable across processes
on one Linux host because CLOCK_MONOTONIC is system-wide.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from kaflow.client import (
    AsyncConsumer,
    CommitFailedError,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)


class _Member:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.consumer = AsyncConsumer(
            args.bootstrap.split(","),
            group_id=args.group,
            group_instance_id=args.instance_id,
            session_timeout_ms=args.session_timeout_ms,
            heartbeat_interval_ms=args.heartbeat_interval_ms,
            max_poll_interval_ms=args.max_poll_interval_ms,
            auto_offset_reset="earliest",
            retry_timeout_ms=args.retry_timeout_ms,
        )
        self.processed = 0
        self.stopped_once = False

    def emit(self, event: str, **fields: Any) -> None:
        metadata = self.consumer.group_metadata()
        line = {
            "event": event,
            "member_id": metadata.member_id if metadata else None,
            "member_epoch": metadata.member_epoch if metadata else None,
            "group_epoch": metadata.group_epoch if metadata else None,
            "pid": os.getpid(),
            "t": time.monotonic(),
            **fields,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        rendered = {str(tp.partition): offset for tp, offset in sorted(offsets.items())}
        metadata = self.consumer.group_metadata()
        sent_as = metadata.member_id if metadata is not None else None
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as error:
            self.emit("commit_failed", offsets=rendered, sent_as=sent_as, error=str(error))
            return
        self.emit("commit", offsets=rendered, sent_as=sent_as)

    async def process(self, records: list[ConsumerRecord]) -> None:
        next_offsets: dict[TopicPartition, int] = {}
        for record in records:
            self.emit(
                "record",
                partition=record.partition,
                offset=record.offset,
                value=(record.value or b"").decode(),
            )
            next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
            self.processed += 1
        stop_at = self.args.stop_before_commit
        if stop_at is not None and not self.stopped_once and self.processed >= stop_at:
            # A process paused between processing and committing, as by a long GC pause.
            self.stopped_once = True
            self.emit("stopping")
            os.kill(os.getpid(), signal.SIGSTOP)
        await self.commit(next_offsets)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, member: _Member) -> None:
        self.member = member

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.member.emit("assigned", partitions=sorted(tp.partition for tp in assigned))

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        consumer = self.member.consumer
        offsets = {tp: await consumer.position(tp) for tp in revoked}
        await self.member.commit(offsets)
        self.member.emit("revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.member.emit("lost", partitions=sorted(tp.partition for tp in lost))


async def _run(args: argparse.Namespace) -> None:
    member = _Member(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    member.consumer.subscribe([args.topic], _Listener(member))
    started = time.monotonic()
    try:
        while not stop.is_set():
            records = await member.consumer.poll(timeout_ms=200, max_records=args.max_records)
            await member.process(records)
            if args.exit_after is not None and time.monotonic() - started > args.exit_after:
                break
    finally:
        await member.consumer.close()
        member.emit("closed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="node URLs separated by commas")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--instance-id", help="group_instance_id for static membership")
    parser.add_argument("--session-timeout-ms", type=int, default=2000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=200)
    parser.add_argument("--max-poll-interval-ms", type=int, default=10_000)
    parser.add_argument("--retry-timeout-ms", type=int, default=30_000)
    parser.add_argument("--max-records", type=int, default=20, help="records per poll")
    parser.add_argument(
        "--stop-before-commit",
        type=int,
        metavar="N",
        help="SIGSTOP this process once, after processing N records and before committing",
    )
    parser.add_argument("--exit-after", type=float, help="close and exit after this many s")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
