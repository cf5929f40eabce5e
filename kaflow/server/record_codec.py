"""Records as they appear in produce and fetch bodies.

JSON has no bytes type, so a key, value or header value travels either as a
UTF-8 string (``key``, ``value``) or as standard base64 with padding
(``key_b64``, ``value_b64``). ``null`` means no key or no value and is
distinct from the empty string. In msgpack bodies the same fields are
``bin`` (a ``str`` is taken as its UTF-8 bytes) or ``nil``, and the
``*_b64`` fields do not exist.

Responses name a byte field ``key``/``value`` when it is valid UTF-8 and
``key_b64``/``value_b64`` otherwise; the ``base64`` encoding forces ``*_b64``
for every field. Msgpack responses always carry ``bin`` or ``nil``.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any, Final

from kaflow.broker import FetchResult, Header, ProduceRecord, RecordMetadata, StoredRecord
from kaflow.errors import EmptyRecordsError, InvalidRecordError
from kaflow.server.fields import INT32_MAX, INT64_MAX, Fields, describe_value, expect_object
from kaflow.server.media import BodyFormat
from kaflow.server.producer_fields import PRODUCE_PRODUCER_FIELDS

__all__ = [
    "JsonBytesEncoding",
    "parse_produce_body",
    "render_fetch",
    "render_produce_result",
]


class JsonBytesEncoding(enum.Enum):
    """Byte-field form of JSON fetch responses (the ``encoding`` query parameter)."""

    # UTF-8 text where the bytes decode, base64 where they do not.
    AUTO = "auto"
    # Base64 for every key, value and header value.
    BASE64 = "base64"


_JSON_RECORD_FIELDS: Final = frozenset(
    {"key", "key_b64", "value", "value_b64", "headers", "partition", "timestamp"}
)
_PLAIN_JSON_RECORD_FIELDS: Final = frozenset({"key_b64", "value_b64", "partition", "timestamp"})
_MSGPACK_RECORD_FIELDS: Final = frozenset({"key", "value", "headers", "partition", "timestamp"})
_JSON_HEADER_FIELDS: Final = frozenset({"name", "value", "value_b64"})
_MSGPACK_HEADER_FIELDS: Final = frozenset({"name", "value"})


def parse_produce_body(body: Any, body_format: BodyFormat) -> list[ProduceRecord]:
    """Turn a decoded produce body ``{"records": [...]}`` into ProduceRecords.

    The body may also carry the idempotent producer fields, which
    kaflow.server.producer_fields reads. Raises MalformedBodyError for a
    wrong body shape, EmptyRecordsError for an empty list and
    InvalidRecordError, with the record's index, for a wrong record.
    """
    fields = Fields(expect_object(body, "body"), "body")
    fields.reject_unknown({"records", *PRODUCE_PRODUCER_FIELDS})
    raw_records = fields.required_list("records")
    if not raw_records:
        raise EmptyRecordsError(
            "records is an empty array; send at least one record", field="records"
        )

    records: list[ProduceRecord] = []
    for index, raw in enumerate(raw_records):
        record = _parse_plain_json_record(raw) if body_format is BodyFormat.JSON else None
        if record is None:
            record = _parse_record(raw, f"records[{index}]", index, body_format)
        records.append(record)
    return records


def _parse_plain_json_record(raw: Any) -> ProduceRecord | None:
    """Parse the shape the Python client sends, or return None for _parse_record to handle.

    That shape is an object of ``key_b64``, ``value_b64``, ``partition`` and
    ``timestamp`` only, without headers. This path accepts only what
    _parse_record accepts, returns the same record, and skips its per-field
    bookkeeping, which a profile of a produce run showed as a large share of
    the node's CPU. Anything else, valid or not, goes to _parse_record,
    which also words the errors.
    """
    if type(raw) is not dict or not raw.keys() <= _PLAIN_JSON_RECORD_FIELDS:
        return None
    partition = raw.get("partition")
    if partition is not None and (type(partition) is not int or not 0 <= partition <= INT32_MAX):
        return None
    timestamp = raw.get("timestamp")
    if timestamp is not None and (type(timestamp) is not int or not 0 <= timestamp <= INT64_MAX):
        return None
    key_text = raw.get("key_b64")
    value_text = raw.get("value_b64")
    if (key_text is not None and type(key_text) is not str) or (
        value_text is not None and type(value_text) is not str
    ):
        return None
    try:
        key = None if key_text is None else base64.b64decode(key_text, validate=True)
        value = None if value_text is None else base64.b64decode(value_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return ProduceRecord(key=key, value=value, partition=partition, timestamp=timestamp)


def _parse_record(raw: Any, path: str, index: int, body_format: BodyFormat) -> ProduceRecord:
    try:
        fields = Fields(expect_object(raw, path, InvalidRecordError), path, InvalidRecordError)
        if body_format is BodyFormat.JSON:
            fields.reject_unknown(_JSON_RECORD_FIELDS)
        else:
            fields.reject_unknown(_MSGPACK_RECORD_FIELDS)
        key = _read_bytes(fields, "key", body_format)
        value = _read_bytes(fields, "value", body_format)
        headers = tuple(
            _parse_header(raw_header, f"{path}.headers[{position}]", body_format)
            for position, raw_header in enumerate(fields.optional_list("headers"))
        )
        partition = fields.optional_int("partition", None, 0, INT32_MAX)
        timestamp = fields.optional_int("timestamp", None, 0, INT64_MAX)
    except InvalidRecordError as exc:
        exc.details.setdefault("index", index)
        raise
    return ProduceRecord(
        key=key, value=value, headers=headers, partition=partition, timestamp=timestamp
    )


def _parse_header(raw: Any, path: str, body_format: BodyFormat) -> Header:
    fields = Fields(expect_object(raw, path, InvalidRecordError), path, InvalidRecordError)
    if body_format is BodyFormat.JSON:
        fields.reject_unknown(_JSON_HEADER_FIELDS)
    else:
        fields.reject_unknown(_MSGPACK_HEADER_FIELDS)

    if fields.obj.get("name") is None:
        raise fields.missing("name", "a non-empty string")
    name = fields.required_str("name")
    if not name:
        raise InvalidRecordError(
            f"{path}.name is empty; every header needs a non-empty name", field=f"{path}.name"
        )
    # Header names are stored as UTF-8, so a lone surrogate cannot be stored.
    _encode_utf8(fields, "name", name, has_b64_form=False)

    value = _read_bytes(fields, "value", body_format)
    if value is None:
        # Kafka allows null header values, but Kaflow stores header values as bytes.
        raise InvalidRecordError(
            f"{path}.value is missing or null; send a string, or an empty string for no value",
            field=f"{path}.value",
        )
    return name, value


def _read_bytes(fields: Fields, name: str, body_format: BodyFormat) -> bytes | None:
    """Read a byte field from ``name`` (UTF-8 text or msgpack bin) or ``name_b64``.

    Returns None when the field is absent or null.
    """
    if body_format is BodyFormat.MSGPACK:
        return _read_msgpack_bytes(fields, name)

    b64_name = f"{name}_b64"
    if fields.has(name) and fields.has(b64_name):
        raise InvalidRecordError(
            f"{fields.field_path(name)} and {fields.field_path(b64_name)} are both set; "
            "send the bytes in one of them",
            field=fields.field_path(name),
        )

    source = b64_name if fields.has(b64_name) else name
    value = fields.obj.get(source)
    if value is None:
        return None
    if not isinstance(value, str):
        raise fields.wrong_type(source, "a string or null")
    if source == b64_name:
        return _decode_base64(fields, b64_name, value)
    return _encode_utf8(fields, name, value)


def _read_msgpack_bytes(fields: Fields, name: str) -> bytes | None:
    value = fields.obj.get(name)
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _encode_utf8(fields, name, value)
    raise fields.wrong_type(name, "bin, str or nil")


def _encode_utf8(fields: Fields, name: str, value: str, *, has_b64_form: bool = True) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON's \ud800-style escapes can produce lone surrogates, which have no UTF-8 form.
        fix = f"send arbitrary bytes in {name}_b64" if has_b64_form else "use valid Unicode text"
        raise InvalidRecordError(
            f"{fields.field_path(name)} contains a lone surrogate at character {exc.start} "
            f"that is not valid UTF-8; {fix}",
            field=fields.field_path(name),
        ) from exc


def _decode_base64(fields: Fields, name: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRecordError(
            f"{fields.field_path(name)} is not valid standard base64 (RFC 4648 alphabet "
            f"with '=' padding): {describe_value(value)}",
            field=fields.field_path(name),
        ) from exc


def render_produce_result(metadata: list[RecordMetadata]) -> dict[str, Any]:
    return {
        "records": [
            {"partition": item.partition, "offset": item.offset, "timestamp": item.timestamp}
            for item in metadata
        ]
    }


def render_fetch(
    topic: str,
    partition: int,
    result: FetchResult,
    body_format: BodyFormat,
    encoding: JsonBytesEncoding,
) -> dict[str, Any]:
    """Build the fetch response body for ``body_format``."""
    if body_format is BodyFormat.MSGPACK:
        records = [_render_msgpack_record(record) for record in result.records]
    else:
        records = [_render_json_record(record, encoding) for record in result.records]
    return {
        "topic": topic,
        "partition": partition,
        "records": records,
        "next_offset": result.next_offset,
        "high_watermark": result.high_watermark,
        "log_start_offset": result.log_start_offset,
    }


def _render_msgpack_record(record: StoredRecord) -> dict[str, Any]:
    return {
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key,
        "value": record.value,
        "headers": [{"name": name, "value": value} for name, value in record.headers],
    }


def _render_json_record(record: StoredRecord, encoding: JsonBytesEncoding) -> dict[str, Any]:
    rendered: dict[str, Any] = {"offset": record.offset, "timestamp": record.timestamp}
    _put_json_bytes(rendered, "key", record.key, encoding)
    _put_json_bytes(rendered, "value", record.value, encoding)
    headers: list[dict[str, Any]] = []
    for name, value in record.headers:
        header: dict[str, Any] = {"name": name}
        _put_json_bytes(header, "value", value, encoding)
        headers.append(header)
    rendered["headers"] = headers
    return rendered


def _put_json_bytes(
    target: dict[str, Any], name: str, value: bytes | None, encoding: JsonBytesEncoding
) -> None:
    if encoding is JsonBytesEncoding.BASE64:
        target[f"{name}_b64"] = None if value is None else base64.b64encode(value).decode("ascii")
        return
    if value is None:
        target[name] = None
        return
    try:
        target[name] = value.decode("utf-8")
    except UnicodeDecodeError:
        target[f"{name}_b64"] = base64.b64encode(value).decode("ascii")
