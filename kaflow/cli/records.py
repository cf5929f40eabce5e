"""Conversions between record bytes and the JSON shapes of docs/http-api.md.

In JSON a key, value or header value is a UTF-8 string in ``key`` /
``value``, or standard base64 in ``key_b64`` / ``value_b64`` when the bytes
are not valid UTF-8. ``null`` is a missing key or value and differs from ``""``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from kaflow.errors import KaflowError

__all__ = [
    "Header",
    "decode_bytes_field",
    "decode_headers",
    "encode_bytes_field",
    "encode_headers",
    "format_json_record",
    "format_text_record",
]

Header = tuple[str, bytes]


def encode_bytes_field(name: str, data: bytes | None) -> dict[str, Any]:
    """Return ``{name: text}`` for UTF-8 bytes and ``{name_b64: base64}`` for any other bytes."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_b64": base64.b64encode(data).decode("ascii")}


def decode_bytes_field(obj: dict[str, Any], name: str) -> bytes | None:
    """Read ``name`` or ``name_b64`` from a response object; a missing field is None."""
    encoded = obj.get(f"{name}_b64")
    if encoded is not None:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError) as exc:
            raise KaflowError(
                f"node returned invalid base64 in {name}_b64: {encoded!r}", field=f"{name}_b64"
            ) from exc
    text = obj.get(name)
    if text is None:
        return None
    if not isinstance(text, str):
        raise KaflowError(f"node returned a non-string {name}: {text!r}", field=name)
    return text.encode("utf-8")


def encode_headers(headers: Sequence[Header]) -> list[dict[str, Any]]:
    return [{"name": name, **encode_bytes_field("value", value)} for name, value in headers]


def decode_headers(raw_headers: Sequence[dict[str, Any]]) -> list[Header]:
    headers: list[Header] = []
    for raw in raw_headers:
        value = decode_bytes_field(raw, "value")
        headers.append((str(raw.get("name", "")), b"" if value is None else value))
    return headers


def format_json_record(topic: str, partition: int, record: dict[str, Any]) -> dict[str, Any]:
    """Build the object `kaflow consume --output json` prints for one fetched record."""
    key = decode_bytes_field(record, "key")
    value = decode_bytes_field(record, "value")
    headers = decode_headers(record.get("headers") or [])
    return {
        "topic": topic,
        "partition": partition,
        "offset": record["offset"],
        "timestamp": record["timestamp"],
        **encode_bytes_field("key", key),
        **encode_bytes_field("value", value),
        "headers": encode_headers(headers),
    }


def format_text_record(
    partition: int, record: dict[str, Any], print_key: bool, print_offset: bool
) -> bytes:
    """Build one tab-separated output line (without newline) from a fetched record.

    The columns are ``partition=P``, ``offset=O`` (with ``print_offset``), the
    key (with ``print_key``) and the value. Keys and values are written as
    raw bytes, and a null key or value is written as ``null``.
    """
    columns: list[bytes] = []
    if print_offset:
        columns.append(f"partition={partition}".encode())
        columns.append(f"offset={record['offset']}".encode())
    if print_key:
        columns.append(_text_or_null(decode_bytes_field(record, "key")))
    columns.append(_text_or_null(decode_bytes_field(record, "value")))
    return b"\t".join(columns)


def _text_or_null(data: bytes | None) -> bytes:
    return b"null" if data is None else data
