"""`kaflow produce`: send lines from stdin or a file to a topic, one record per line."""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kaflow.cli.arguments import (
    SubParsers,
    add_client_options,
    add_output_option,
    make_client,
    non_negative_int,
    positive_int,
)
from kaflow.cli.exit_codes import ExitCode, NodeUnreachableError, UsageError
from kaflow.cli.http import NodeClient
from kaflow.cli.output import print_json, print_json_line
from kaflow.cli.records import Header, encode_bytes_field, encode_headers
from kaflow.errors import KaflowError

__all__ = ["MAX_BATCH_BODY_BYTES", "read_lines", "register", "split_line"]

DEFAULT_BATCH_SIZE = 500
# A request body is sent once it reaches this size, which keeps it far below
# the node's default --max-request-bytes (8 MiB). A single larger record is
# sent alone, and the node rejects it if it exceeds the node's limit.
MAX_BATCH_BODY_BYTES = 1024 * 1024
_READ_CHUNK_BYTES = 64 * 1024


def register(subparsers: SubParsers) -> None:
    """Add `produce` to the top-level parser."""
    parser = subparsers.add_parser(
        "produce",
        help="send lines from stdin or a file to a topic, one record per line",
        description=(
            "Send each line of stdin (or --file) to TOPIC as one record. Empty lines are "
            "skipped. A batch is sent when it contains --batch-size records or when no more "
            "input is ready, so lines typed by hand are sent as soon as they are entered."
        ),
    )

    parser.add_argument("topic", help="topic to produce to")
    parser.add_argument("--file", metavar="PATH", help="read lines from this file instead of stdin")
    parser.add_argument(
        "--key-separator",
        metavar="SEP",
        help="split each line at the first SEP into key and value; lines without SEP are an error",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header_entry,
        metavar="NAME=VALUE",
        help="add this header to every record (repeatable, order kept)",
    )

    parser.add_argument(
        "--partition",
        type=non_negative_int,
        metavar="N",
        help="send every record to partition N (default: murmur2 of the key, "
        "or round robin for records without a key)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"maximum records per request (default: {DEFAULT_BATCH_SIZE})",
    )

    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print each record's partition and offset instead of a summary line",
    )
    add_output_option(parser, "one summary line, or one line per record with --verbose")

    add_client_options(parser, top_level=False)
    parser.set_defaults(handler=_run)


def _header_entry(text: str) -> Header:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(
            f"invalid header {text!r}: expected name=value, for example trace-id=abc123"
        )
    return name, value.encode("utf-8")


def read_lines(fd: int) -> Iterator[tuple[bytes, bool]]:
    """Yield each line of ``fd`` without its newline, with whether more input is ready now.

    "Ready" means another line is already buffered or the descriptor is
    readable without blocking. A regular file is always readable, so only
    pipes and terminals make the caller send a partial batch.
    """
    pending = bytearray()
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK_BYTES)
        except OSError as exc:
            raise UsageError(f"cannot read input: {exc.strerror}") from None
        if not chunk:
            break
        if b"\n" not in chunk:
            # Part of a long line: only the new bytes are scanned, never the whole line again.
            pending += chunk
            continue
        first, *lines, rest = chunk.split(b"\n")
        lines.insert(0, bytes(pending) + first)
        pending = bytearray(rest)
        for index, line in enumerate(lines):
            more_ready = index < len(lines) - 1 or bool(pending) or _is_readable(fd)
            yield line, more_ready
    if pending:
        yield bytes(pending), False


def _is_readable(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def split_line(
    line: bytes, line_number: int, key_separator: bytes | None
) -> tuple[bytes | None, bytes]:
    """Return (key, value) for one input line; raise UsageError if the separator is missing."""
    if key_separator is None:
        return None, line
    key, separator, value = line.partition(key_separator)
    if not separator:
        raise UsageError(
            f"line {line_number} contains no key separator {key_separator.decode()!r}; "
            "add the separator to the line or drop --key-separator"
        )
    return key, value


@dataclass
class _PartitionSummary:
    records: int = 0
    first_offset: int | None = None
    last_offset: int | None = None

    def add(self, offset: int) -> None:
        self.records += 1
        self.first_offset = offset if self.first_offset is None else min(self.first_offset, offset)
        self.last_offset = offset if self.last_offset is None else max(self.last_offset, offset)


@dataclass
class _Producer:
    """Collects encoded records into request bodies and sends them."""

    client: NodeClient
    topic: str
    batch_size: int
    verbose: bool
    output: str
    produced: int = 0
    partitions: dict[int, _PartitionSummary] = field(default_factory=dict)
    _parts: list[bytes] = field(default_factory=list)
    _body_bytes: int = 0

    def add(self, record: dict[str, Any], more_ready: bool) -> None:
        part = json.dumps(record, separators=(",", ":")).encode()
        if self._parts and self._body_bytes + len(part) > MAX_BATCH_BODY_BYTES:
            self.flush()
        self._parts.append(part)
        self._body_bytes += len(part) + 1
        if len(self._parts) >= self.batch_size or not more_ready:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        body = b'{"records":[' + b",".join(self._parts) + b"]}"
        results = self.client.produce_encoded(self.topic, body)
        self._parts = []
        self._body_bytes = 0
        for result in results:
            self._report(result)
        sys.stdout.flush()

    def _report(self, result: dict[str, Any]) -> None:
        partition, offset = int(result["partition"]), int(result["offset"])
        self.produced += 1
        self.partitions.setdefault(partition, _PartitionSummary()).add(offset)
        if not self.verbose:
            return
        if self.output == "json":
            print_json_line(
                {
                    "topic": self.topic,
                    "partition": partition,
                    "offset": offset,
                    "timestamp": result.get("timestamp"),
                }
            )
        else:
            sys.stdout.buffer.write(f"partition={partition}\toffset={offset}\n".encode())

    def print_summary(self) -> None:
        if self.output == "json":
            print_json(
                {
                    "topic": self.topic,
                    "records": self.produced,
                    "partitions": [
                        {
                            "partition": partition,
                            "records": summary.records,
                            "first_offset": summary.first_offset,
                            "last_offset": summary.last_offset,
                        }
                        for partition, summary in sorted(self.partitions.items())
                    ],
                }
            )
        else:
            noun = "record" if self.produced == 1 else "records"
            print(f"{self.produced} {noun} produced to {self.topic}")


def _run(args: argparse.Namespace) -> int:
    key_separator = None if args.key_separator is None else args.key_separator.encode("utf-8")
    if key_separator == b"":
        raise UsageError("--key-separator must not be empty")
    headers = encode_headers(args.header)
    producer = _Producer(
        client=make_client(args),
        topic=args.topic,
        batch_size=args.batch_size,
        verbose=args.verbose,
        output=args.output,
    )

    try:
        _produce_input(producer, args, key_separator, headers)
    except (KaflowError, NodeUnreachableError, UsageError):
        if producer.produced:
            noun = "record was" if producer.produced == 1 else "records were"
            print(
                f"note: {producer.produced} {noun} produced before this error",
                file=sys.stderr,
            )
        raise

    if not args.verbose:
        producer.print_summary()
    return ExitCode.OK


def _produce_input(
    producer: _Producer,
    args: argparse.Namespace,
    key_separator: bytes | None,
    headers: list[dict[str, Any]],
) -> None:
    if args.file is None:
        _produce_lines(producer, sys.stdin.fileno(), key_separator, headers, args.partition)
        return
    try:
        fd = os.open(args.file, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot open --file {args.file!r}: {exc.strerror}") from None
    try:
        _produce_lines(producer, fd, key_separator, headers, args.partition)
    finally:
        os.close(fd)


def _produce_lines(
    producer: _Producer,
    fd: int,
    key_separator: bytes | None,
    headers: list[dict[str, Any]],
    partition: int | None,
) -> None:
    for line_number, (raw_line, more_ready) in enumerate(read_lines(fd), start=1):
        line = raw_line.removesuffix(b"\r")
        if not line:
            if not more_ready:
                producer.flush()
            continue
        key, value = split_line(line, line_number, key_separator)
        record: dict[str, Any] = {
            **encode_bytes_field("key", key),
            **encode_bytes_field("value", value),
            "headers": headers,
        }
        if partition is not None:
            record["partition"] = partition
        producer.add(record, more_ready)
    producer.flush()
