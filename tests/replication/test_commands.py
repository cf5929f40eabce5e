from __future__ import annotations

import msgpack
import pytest

from kaflow.replication.commands import (
    FORMAT_VERSION,
    AlterTopic,
    Append,
    AppendItem,
    Command,
    CommandFormatError,
    CommitOffsets,
    CreateTopic,
    DeleteRecords,
    DeleteTopic,
    OffsetEntry,
    decode_command,
    encode_command,
)

COMMANDS: list[Command] = [
    CreateTopic("orders", 3, {"retention.ms": -1}),
    DeleteTopic("orders"),
    AlterTopic("orders", 6, {"segment.bytes": 4096}, ["retention.ms"]),
    AlterTopic("orders", None, {}, []),
    Append(
        [
            AppendItem("orders", 7, 0, b"\x00\xffbatch", 2),
            AppendItem("audit", 9, 4, bytes(range(256)), 1),
        ]
    ),
    CommitOffsets("billing", [OffsetEntry("orders", 1, 42, "checkpoint")], 1_700_000_000_000),
    DeleteRecords("orders", 2, 1000),
]


@pytest.mark.parametrize(
    "command",
    COMMANDS,
    ids=[
        "create",
        "delete",
        "alter",
        "alter-nothing",
        "append",
        "commit-offsets",
        "delete-records",
    ],
)
def test_command_round_trip(command: Command) -> None:
    assert decode_command(encode_command(command)) == command


def test_command_is_versioned_msgpack_map() -> None:
    fields = msgpack.unpackb(encode_command(DeleteTopic("t")))

    assert fields == {"v": FORMAT_VERSION, "op": "delete_topic", "name": "t"}


def test_append_batch_stays_binary() -> None:
    fields = msgpack.unpackb(encode_command(Append([AppendItem("t", 1, 0, b"\x80\x81", 1)])))

    assert fields["items"][0]["batch"] == b"\x80\x81"


def test_decode_rejects_other_version() -> None:
    data = msgpack.packb({"v": FORMAT_VERSION + 1, "op": "delete_topic", "name": "t"})

    with pytest.raises(CommandFormatError, match="format version 2 is not supported"):
        decode_command(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "must be a msgpack map"),
        (msgpack.packb({"v": 1, "op": "compact_topic"}), "unknown command op 'compact_topic'"),
        (msgpack.packb({"v": 1, "op": "delete_topic"}), "'name' must be"),
        (
            msgpack.packb(
                {"v": 1, "op": "delete_records", "topic": "t", "partition": True, "offset": 1}
            ),
            "'partition' must be",
        ),
        (
            msgpack.packb(
                {"v": 1, "op": "create_topic", "name": "t", "partitions": 1, "config": {"a": "1"}}
            ),
            "'config' must map strings to ints",
        ),
        (msgpack.packb({"v": 1, "op": "append", "items": [1]}), "array of maps"),
    ],
    ids=[
        "garbage",
        "not-a-map",
        "unknown-op",
        "missing-field",
        "bool-partition",
        "string-config-value",
        "item-not-map",
    ],
)
def test_decode_rejects_malformed(data: bytes, match: str) -> None:
    with pytest.raises(CommandFormatError, match=match):
        decode_command(data)
