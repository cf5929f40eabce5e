from __future__ import annotations

from typing import Any

import pytest

from kaflow.cli.records import (
    decode_bytes_field,
    encode_bytes_field,
    format_json_record,
    format_text_record,
)
from kaflow.errors import KaflowError


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello", {"value": "hello"}),
        (b"", {"value": ""}),
        (None, {"value": None}),
        ("grüße".encode(), {"value": "grüße"}),
        (b"\xff\x00\xfe", {"value_b64": "/wD+"}),
    ],
    ids=["ascii", "empty", "null", "utf8", "binary"],
)
def test_encode_bytes_field(data: bytes | None, expected: dict[str, Any]) -> None:
    assert encode_bytes_field("value", data) == expected


@pytest.mark.parametrize(
    "data", [b"hello", b"", None, b"\xff\x00\xfe"], ids=["text", "empty", "null", "binary"]
)
def test_bytes_field_round_trips(data: bytes | None) -> None:
    assert decode_bytes_field(encode_bytes_field("key", data), "key") == data


def test_decode_bytes_field_rejects_bad_base64() -> None:
    with pytest.raises(KaflowError, match="invalid base64 in key_b64"):
        decode_bytes_field({"key_b64": "not base64!"}, "key")


def stored_record(**fields: Any) -> dict[str, Any]:
    record = {"offset": 5, "timestamp": 1700000000000, "key": "k", "value": "v", "headers": []}
    record.update(fields)
    return record


def test_text_record_value_only() -> None:
    line = format_text_record(2, stored_record(), print_key=False, print_offset=False)

    assert line == b"v"


def test_text_record_with_offset_and_key() -> None:
    line = format_text_record(2, stored_record(), print_key=True, print_offset=True)

    assert line == b"partition=2\toffset=5\tk\tv"


def test_text_record_writes_raw_bytes_and_null() -> None:
    record = stored_record(key=None, value=None, value_b64="/wD+")
    del record["value"]

    line = format_text_record(0, record, print_key=True, print_offset=False)

    assert line == b"null\t\xff\x00\xfe"


def test_json_record_has_every_field() -> None:
    record = stored_record(headers=[{"name": "trace", "value": "abc"}])

    assert format_json_record("orders", 1, record) == {
        "topic": "orders",
        "partition": 1,
        "offset": 5,
        "timestamp": 1700000000000,
        "key": "k",
        "value": "v",
        "headers": [{"name": "trace", "value": "abc"}],
    }


def test_json_record_uses_b64_for_binary() -> None:
    record = {
        "offset": 0,
        "timestamp": 1,
        "key_b64": "/w==",
        "value_b64": "AAE=",
        "headers": [{"name": "bin", "value_b64": "/w=="}],
    }

    formatted = format_json_record("t", 0, record)

    assert formatted["key_b64"] == "/w=="
    assert "key" not in formatted
    assert formatted["value"] == "\x00\x01"
    assert formatted["headers"] == [{"name": "bin", "value_b64": "/w=="}]
