from __future__ import annotations

import argparse
import contextlib
import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaflow.cli.exit_codes import UsageError
from kaflow.cli.output import format_table
from kaflow.cli.positions import parse_start_offset, parse_timestamp_ms
from kaflow.cli.produce import read_lines, split_line


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_read_lines_from_pipe(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"one\ntwo\n")
    lines = read_lines(read_fd)

    assert next(lines) == (b"one", True)
    assert next(lines) == (b"two", False)

    os.write(write_fd, b"three\npartial")
    os.close(write_fd)

    assert list(lines) == [(b"three", True), (b"partial", False)]


def test_read_lines_from_file_always_ready(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"a\n\nb\r\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        lines = list(read_lines(fd))
    finally:
        os.close(fd)

    assert lines == [(b"a", True), (b"", True), (b"b\r", True)]


def test_read_lines_joins_line_across_chunks(tmp_path: Path) -> None:
    long_line = b"x" * 200_000
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" + long_line + b"\nend")
    fd = os.open(path, os.O_RDONLY)
    try:
        lines = [line for line, _ in read_lines(fd)]
    finally:
        os.close(fd)

    assert lines == [b"short", long_line, b"end"]


def test_split_line_at_first_separator() -> None:
    assert split_line(b"k:v:w", 1, b":") == (b"k", b"v:w")
    assert split_line(b":v", 1, b":") == (b"", b"v")
    assert split_line(b"whole", 1, None) == (None, b"whole")


def test_split_line_missing_separator() -> None:
    with pytest.raises(UsageError, match="line 4 contains no key separator ':'"):
        split_line(b"novalue", 4, b":")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("earliest", "earliest"), ("latest", "latest"), ("0", 0), ("42", 42)],
)
def test_parse_start_offset(text: str, expected: int | str) -> None:
    assert parse_start_offset(text) == expected


@pytest.mark.parametrize("text", ["-1", "first", "1.5"])
def test_parse_start_offset_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid offset"):
        parse_start_offset(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000123", 1700000000123),
        ("2024-05-01T12:00:00Z", 1714564800000),
        ("2024-05-01T14:00:00+02:00", 1714564800000),
        ("2024-05-01T12:00:00.250Z", 1714564800250),
    ],
    ids=["epoch-ms", "utc", "offset", "fraction"],
)
def test_parse_timestamp_ms(text: str, expected: int) -> None:
    assert parse_timestamp_ms(text) == expected


def test_parse_timestamp_without_offset_is_local_time() -> None:
    expected = int(datetime.datetime(2024, 5, 1, 12, 0).timestamp() * 1000)

    assert parse_timestamp_ms("2024-05-01T12:00:00") == expected


@pytest.mark.parametrize("text", ["yesterday", "1969-12-31T00:00:00Z", "-5"])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid time"):
        parse_timestamp_ms(text)


def test_format_table_aligns_columns() -> None:
    table = format_table(("NAME", "PARTITIONS"), [("orders", 3), ("a", 12)])

    assert table.splitlines() == [
        "NAME    PARTITIONS",
        "orders  3",
        "a       12",
    ]


def test_format_table_header_only_when_empty() -> None:
    assert format_table(("NAME", "RECORDS"), []) == "NAME  RECORDS"
