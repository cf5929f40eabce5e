"""A chaos consumer in its own process, so that faults can SIGKILL and SIGSTOP it.

Run by :class:`chaos.consumers.ProcessConsumer` as ``python -m
chaos.consumer_process``. The process polls, logs every record as processed
to ``consumed-<name>.jsonl``, commits, and logs each commit to
``commits-<name>.jsonl``. Times are seconds since ``--run-start`` (a Unix
time), the runner's timeline origin.

Signals:

- SIGUSR1 arms a crash: after the next poll that returned records, and
  after those records are logged, the process sends itself SIGKILL, so it
  dies between processing and commit.
- SIGTERM stops it cleanly: it commits what it processed and leaves the group.
- SIGSTOP and SIGCONT freeze it and let it run again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from kaflow.client import AsyncConsumer
from kaflow.client.errors import ClientError
from kaflow.errors import KaflowError

__all__ = ["main"]

logger = logging.getLogger("chaos.consumer_process")

POLL_TIMEOUT_MS = 500


class _State:
    def __init__(self) -> None:
        self.crash_armed = False
        self.stopping = asyncio.Event()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaos.consumer_process")
    parser.add_argument("--bootstrap", action="append", required=True, help="node URL")
    parser.add_argument("--name", required=True, help="consumer name in the logs")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument(
        "--partitions", default=None,
        help="comma-separated partitions to assign(); without it the consumer subscribes",
    )  # fmt: skip
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--run-start", type=float, required=True, help="Unix time of t=0")
    parser.add_argument("--session-timeout-ms", type=int, default=6_000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=1_000)
    parser.add_argument("--max-poll-interval-ms", type=int, default=5_000)
    return parser


def _write(log: IO[str], entry: dict[str, Any]) -> None:
    log.write(json.dumps(entry, separators=(",", ":")) + "\n")
    log.flush()


def _member(consumer: AsyncConsumer, name: str) -> tuple[str, int | None]:
    metadata = consumer.group_metadata()
    if metadata is None or metadata.member_id is None:
        # Assigned partitions have no group member, so the consumer name is the member id.
        return name, None
    return metadata.member_id, metadata.member_epoch


async def _consume(args: argparse.Namespace, state: _State) -> None:
    consumed = open(args.out_dir / f"consumed-{args.name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    commits = open(args.out_dir / f"commits-{args.name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    run_start: float = args.run_start

    def now() -> float:
        return round(time.time() - run_start, 4)

    consumer = AsyncConsumer(
        args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        retry_timeout_ms=60_000,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        max_poll_interval_ms=args.max_poll_interval_ms,
    )
    if args.partitions is None:
        consumer.subscribe([args.topic])
    else:
        consumer.assign([(args.topic, int(p)) for p in args.partitions.split(",") if p])

    failures = 0
    try:
        while not state.stopping.is_set():
            try:
                records = await consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
                member_id, member_epoch = _member(consumer, args.name)
                positions: dict[int, int] = {}
                for record in records:
                    _write(consumed, {
                        "consumer": args.name, "member_id": member_id,
                        "member_epoch": member_epoch, "partition": record.partition,
                        "offset": record.offset, "t": now(),
                    })  # fmt: skip
                    positions[record.partition] = record.offset + 1
                if state.crash_armed and records:
                    os.kill(os.getpid(), signal.SIGKILL)
                if positions:
                    await consumer.commit({(args.topic, p): o for p, o in positions.items()})
                    member_id, member_epoch = _member(consumer, args.name)
                    for partition, offset in positions.items():
                        _write(commits, {
                            "consumer": args.name, "member_id": member_id,
                            "member_epoch": member_epoch, "partition": partition,
                            "offset": offset, "t": now(),
                        })  # fmt: skip
                failures = 0
            except (KaflowError, ClientError) as exc:
                if failures == 0:
                    logger.warning("consumer error consumer=%s error=%r", args.name, exc)
                failures += 1
                await asyncio.sleep(0.2)
    finally:
        with contextlib.suppress(KaflowError, ClientError):
            await consumer.close()
        consumed.close()
        commits.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )  # fmt: skip

    async def run() -> None:
        state = _State()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, state.stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(state, "crash_armed", True))
        await _consume(args, state)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
