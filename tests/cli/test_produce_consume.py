from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_runner import KAFLOW, clean_env, describe, run_kaflow
from tests.harness import NodeProcess, wait_until


def kaflow(
    node: NodeProcess, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_kaflow(*args, bootstrap=node.url, stdin=stdin)


def consume_json(node: NodeProcess, *args: str) -> list[dict[str, Any]]:
    result = kaflow(node, "consume", *args, "--output", "json")
    assert result.returncode == 0, describe(result)
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def values(records: list[dict[str, Any]]) -> list[str]:
    return [record["value"] for record in records]


def produce_with_timestamps(node: NodeProcess, topic: str, timestamps: list[int]) -> None:
    records = [{"value": f"at-{ts}", "timestamp": ts, "partition": 0} for ts in timestamps]
    node.post(f"/v1/topics/{topic}/records", {"records": records})


def test_produce_key_separator_and_headers(shared_node: NodeProcess) -> None:
    shared_node.create_topic("keyed", partitions=3)
    lines = b"user-1:login\nuser-2:a:b\nuser-1:logout\n:empty-key\n"

    result = kaflow(
        shared_node, "produce", "keyed", "--key-separator", ":",
        "--header", "source=cli", "--header", "trace=t-1", stdin=lines,
    )  # fmt: skip
    records = consume_json(shared_node, "keyed")

    assert result.returncode == 0, describe(result)
    assert result.stdout == b"4 records produced to keyed\n"
    by_value = {record["value"]: record for record in records}
    assert set(by_value) == {"login", "a:b", "logout", "empty-key"}
    assert by_value["login"]["key"] == "user-1"
    assert by_value["a:b"]["key"] == "user-2"
    assert by_value["empty-key"]["key"] == ""
    assert by_value["login"]["partition"] == by_value["logout"]["partition"]
    for record in records:
        assert record["headers"] == [
            {"name": "source", "value": "cli"},
            {"name": "trace", "value": "t-1"},
        ]
        assert record["topic"] == "keyed"
        assert isinstance(record["timestamp"], int)


def test_produce_without_separator_has_null_key(shared_node: NodeProcess) -> None:
    shared_node.create_topic("unkeyed")

    kaflow(shared_node, "produce", "unkeyed", stdin=b"a:b\n\n\r\nlast-without-newline")
    records = consume_json(shared_node, "unkeyed")

    assert values(records) == ["a:b", "last-without-newline"]
    assert [record["key"] for record in records] == [None, None]


def test_produce_missing_separator_stores_nothing(shared_node: NodeProcess) -> None:
    shared_node.create_topic("strict-keys")

    result = kaflow(
        shared_node, "produce", "strict-keys", "--key-separator", "=", stdin=b"k=v\nnokey\n"
    )

    assert result.returncode == 2, describe(result)
    assert "line 2 contains no key separator '='" in result.stderr.decode()
    assert shared_node.get("/v1/topics/strict-keys")["partitions"][0]["high_watermark"] == 0


def test_produce_binary_values_round_trip(shared_node: NodeProcess) -> None:
    shared_node.create_topic("binary")

    kaflow(shared_node, "produce", "binary", "--key-separator", "|", stdin=b"\xff\xfe|\x00\x80\n")
    records = consume_json(shared_node, "binary")
    text = kaflow(shared_node, "consume", "binary", "--print-key")

    assert records[0]["key_b64"] == "//4="
    assert records[0]["value_b64"] == "AIA="
    assert "key" not in records[0]
    assert text.stdout == b"\xff\xfe\t\x00\x80\n"


def test_produce_verbose_and_json_output(shared_node: NodeProcess) -> None:
    shared_node.create_topic("verbose", partitions=2)

    verbose = kaflow(
        shared_node, "produce", "verbose", "--partition", "1", "--verbose", stdin=b"a\nb\n"
    )
    summary = kaflow(
        shared_node, "produce", "verbose", "--partition", "0", "--output", "json", stdin=b"c\n"
    )
    lines = kaflow(
        shared_node, "produce", "verbose", "--partition", "0", "--verbose", "--output", "json",
        stdin=b"d\n",
    )  # fmt: skip

    assert verbose.stdout.decode().splitlines() == [
        "partition=1\toffset=0",
        "partition=1\toffset=1",
    ]
    assert json.loads(summary.stdout) == {
        "topic": "verbose",
        "records": 1,
        "partitions": [{"partition": 0, "records": 1, "first_offset": 0, "last_offset": 0}],
    }
    line = json.loads(lines.stdout)
    assert (line["topic"], line["partition"], line["offset"]) == ("verbose", 0, 1)
    assert isinstance(line["timestamp"], int)


def test_produce_from_file_in_batches(shared_node: NodeProcess, tmp_path: Path) -> None:
    shared_node.create_topic("from-file", partitions=2)
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"record-{number}\n" for number in range(1234)))

    result = kaflow(shared_node, "produce", "from-file", "--file", str(path), "--batch-size", "500")
    records = consume_json(shared_node, "from-file")

    assert result.returncode == 0, describe(result)
    assert result.stdout == b"1234 records produced to from-file\n"
    assert sorted(values(records)) == sorted(f"record-{number}" for number in range(1234))


def test_produce_missing_file_fails(shared_node: NodeProcess, tmp_path: Path) -> None:
    result = kaflow(shared_node, "produce", "any", "--file", str(tmp_path / "absent.txt"))

    assert result.returncode == 2, describe(result)
    assert "cannot open --file" in result.stderr.decode()


@pytest.fixture(scope="module")
def ten_records(shared_node: NodeProcess) -> str:
    """A topic with values 0..9 in partition 0 and values 10..12 in partition 1."""
    shared_node.create_topic("ten", partitions=2)
    kaflow(
        shared_node,
        "produce",
        "ten",
        "--partition",
        "0",
        stdin=b"".join(b"%d\n" % n for n in range(10)),
    )
    kaflow(shared_node, "produce", "ten", "--partition", "1", stdin=b"10\n11\n12\n")
    return "ten"


def test_consume_reads_partitions_in_order(shared_node: NodeProcess, ten_records: str) -> None:
    result = kaflow(shared_node, "consume", ten_records)

    assert result.returncode == 0, describe(result)
    assert result.stdout.decode().splitlines() == [str(n) for n in range(13)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--partition", "0", "--offset", "earliest"), [str(n) for n in range(10)]),
        (("--partition", "0", "--offset", "7"), ["7", "8", "9"]),
        (("--partition", "0", "--offset", "10"), []),
        (("--offset", "latest"), []),
        (("--partition", "1", "--count", "2"), ["10", "11"]),
        (("--offset", "2", "--count", "4"), ["2", "3", "4", "5"]),
    ],
    ids=["earliest", "offset", "at-end", "latest", "count", "offset-count"],
)
def test_consume_start_and_count(
    shared_node: NodeProcess, ten_records: str, args: tuple[str, ...], expected: list[str]
) -> None:
    result = kaflow(shared_node, "consume", ten_records, *args)

    assert result.returncode == 0, describe(result)
    assert result.stdout.decode().splitlines() == expected


def test_consume_offset_out_of_range(shared_node: NodeProcess, ten_records: str) -> None:
    result = kaflow(shared_node, "consume", ten_records, "--partition", "1", "--offset", "4")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: offset_out_of_range: offset 4 ")
    assert "0..3" in result.stderr.decode()


def test_consume_unknown_partition(shared_node: NodeProcess, ten_records: str) -> None:
    result = kaflow(shared_node, "consume", ten_records, "--partition", "2")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: unknown_partition: partition 2 ")


def test_consume_print_key_and_offset(shared_node: NodeProcess) -> None:
    shared_node.create_topic("columns")
    kaflow(shared_node, "produce", "columns", "--key-separator", ",", stdin=b"k1,v1\n")
    kaflow(shared_node, "produce", "columns", stdin=b"v2\n")

    result = kaflow(shared_node, "consume", "columns", "--print-key", "--print-offset")

    assert result.stdout.decode().splitlines() == [
        "partition=0\toffset=0\tk1\tv1",
        "partition=0\toffset=1\tnull\tv2",
    ]


@pytest.mark.parametrize(
    ("from_time", "expected"),
    [
        ("2000", ["at-2000", "at-3000"]),
        ("1970-01-01T00:00:02.500Z", ["at-3000"]),
        ("1970-01-01T01:00:00.999+01:00", ["at-1000", "at-2000", "at-3000"]),
        ("3001", []),
    ],
    ids=["epoch-ms", "iso-utc", "iso-offset", "after-last"],
)
def test_consume_from_time(
    shared_node: NodeProcess, request: pytest.FixtureRequest, from_time: str, expected: list[str]
) -> None:
    topic = f"timed-{request.node.callspec.id}"
    shared_node.create_topic(topic)
    produce_with_timestamps(shared_node, topic, [1000, 2000, 3000])

    records = consume_json(shared_node, topic, "--from-time", from_time)

    assert values(records) == expected


def test_consume_group_resumes_and_commits(shared_node: NodeProcess) -> None:
    shared_node.create_topic("grouped", partitions=2)
    kaflow(shared_node, "produce", "grouped", "--partition", "0", stdin=b"a\nb\nc\n")
    kaflow(shared_node, "produce", "grouped", "--partition", "1", stdin=b"d\n")

    first = kaflow(shared_node, "consume", "grouped", "--group", "billing", "--count", "2")
    committed = shared_node.get("/v1/groups/billing/offsets")["offsets"]
    second = kaflow(shared_node, "consume", "grouped", "--group", "billing")
    third = kaflow(shared_node, "consume", "grouped", "--group", "billing")
    other_group = kaflow(
        shared_node, "consume", "grouped", "--group", "audit", "--offset", "latest"
    )

    assert first.stdout.decode().splitlines() == ["a", "b"]
    assert [(c["topic"], c["partition"], c["offset"]) for c in committed] == [("grouped", 0, 2)]
    assert second.stdout.decode().splitlines() == ["c", "d"]
    assert third.stdout == b""
    assert other_group.stdout == b""
    offsets = {
        c["partition"]: c["offset"]
        for c in shared_node.get("/v1/groups/billing/offsets")["offsets"]
    }
    assert offsets == {0: 3, 1: 1}


def test_consume_group_commit_overrides_offset(shared_node: NodeProcess) -> None:
    shared_node.create_topic("group-first")
    kaflow(shared_node, "produce", "group-first", stdin=b"a\nb\nc\n")
    shared_node.post(
        "/v1/groups/resumer/offsets",
        {"offsets": [{"topic": "group-first", "partition": 0, "offset": 2}]},
    )

    result = kaflow(
        shared_node, "consume", "group-first", "--group", "resumer", "--offset", "earliest"
    )

    assert result.stdout.decode().splitlines() == ["c"]


class LineCollector:
    """Reads a child's stdout lines on a thread so the test can wait with a deadline."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            self.lines.append(raw.decode().rstrip("\n"))


def start_follow(node: NodeProcess, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*KAFLOW, "--bootstrap", node.url, "consume", *args, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_consume_follow_prints_new_records(shared_node: NodeProcess, signum: int) -> None:
    topic = f"followed-{signal.Signals(signum).name.lower()}"
    shared_node.create_topic(topic, partitions=2)
    process = start_follow(shared_node, topic, "--group", "follower", "--print-offset")
    try:
        output = LineCollector(process)
        kaflow(shared_node, "produce", topic, "--partition", "0", stdin=b"first\n")
        wait_until(lambda: len(output.lines) >= 1, 30, "first record printed")
        kaflow(shared_node, "produce", topic, "--partition", "1", stdin=b"second\nthird\n")
        wait_until(lambda: len(output.lines) >= 3, 30, "three records printed")

        process.send_signal(signum)
        status = process.wait(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=30)

    assert status == 0
    assert sorted(output.lines) == [
        "partition=0\toffset=0\tfirst",
        "partition=1\toffset=0\tsecond",
        "partition=1\toffset=1\tthird",
    ]
    offsets = shared_node.get("/v1/groups/follower/offsets")["offsets"]
    assert {(c["partition"], c["offset"]) for c in offsets if c["topic"] == topic} == {
        (0, 1),
        (1, 2),
    }


def test_consume_follow_stops_after_count(shared_node: NodeProcess) -> None:
    shared_node.create_topic("follow-count")
    process = start_follow(shared_node, "follow-count", "--count", "2")
    try:
        kaflow(shared_node, "produce", "follow-count", stdin=b"x\n")
        kaflow(shared_node, "produce", "follow-count", stdin=b"y\nz\n")
        stdout, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait(timeout=30)

    assert process.returncode == 0
    assert stdout == b"x\ny\n"
