"""The record batch codec: pure functions from records to bytes and back.

A batch is the unit the log stores, indexes and returns. All integers in the
fixed header are big-endian. ``varint`` below means unsigned LEB128: 7 bits
per byte, low group first, high bit set on every byte but the last. A
``zigzag varint`` is a signed value mapped to unsigned (0, -1, 1, -2 become
0, 1, 2, 3) and then written as a varint.

Batch header, 43 bytes::

    offset  size  field              type  meaning
    0       8     base_offset        i64   offset of the first record
    8       4     batch_length       i32   bytes of the whole batch, this header included
    12      1     version            i8    format version, 1
    13      4     crc                u32   CRC-32C of bytes 17 .. batch_length
    17      2     attributes         i16   no bits are defined in version 1, so it is 0
    19      4     last_offset_delta  i32   offset of the last record minus base_offset
    23      8     first_timestamp    i64   timestamp of the first record, ms since epoch
    31      8     max_timestamp      i64   largest record timestamp in the batch
    39      4     record_count       i32   number of records, at least 1
    43            records            record_count records, back to back

The CRC leaves out base_offset and batch_length, so the log can assign the
real base offset to a batch that a producer encoded with base offset 0 by
patching the first 8 bytes, without recomputing the CRC.

Record, variable length::

    varint         length           bytes of the record after this field
    varint         offset_delta     record offset minus base_offset
    zigzag varint  timestamp_delta  record timestamp minus first_timestamp
    varint         key_length       0 for a null key, n + 1 for an n-byte key
    bytes          key
    varint         value_length     0 for a null value, n + 1 for an n-byte value
    bytes          value
    varint         header_count
    header_count times:
        varint     name_length      bytes of the UTF-8 name
        bytes      name
        varint     value_length     bytes of the header value
        bytes      value

Version 1 batches are dense: record i has offset delta i, so
last_offset_delta is record_count - 1. Records keep the producer's
timestamps, which need not increase within a batch, so timestamp deltas can
be negative.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c

from kaflow.broker import StoredRecord
from kaflow.errors import (
    EmptyRecordsError,
    InvalidOffsetError,
    InvalidRecordError,
    RecordTooLargeError,
)
from kaflow.storage.errors import CorruptBatchError
from kaflow.storage.varint import get_varint, put_varint, unzigzag, varint_size, zigzag

__all__ = [
    "BATCH_HEADER_SIZE",
    "BATCH_VERSION",
    "BatchHeader",
    "BatchRecord",
    "decode_batch",
    "encode_batch",
    "iter_batches",
    "read_batch_header",
    "record_size_estimate",
    "verify_batch",
    "with_base_offset",
]

BATCH_VERSION = 1

# base_offset, batch_length, version, crc, attributes, last_offset_delta,
# first_timestamp, max_timestamp, record_count.
_HEADER = struct.Struct(">qibIhiqqi")
BATCH_HEADER_SIZE = _HEADER.size
# The CRC covers everything from the attributes field to the end of the batch.
_CRC_START = 17
_CRC_FIELD = struct.Struct(">I")
_CRC_OFFSET = 13
_BASE_OFFSET = struct.Struct(">q")

_INT32_MAX = 2**31 - 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Widest varints an offset delta (below 2**31) and a timestamp delta can take.
_MAX_OFFSET_DELTA_BYTES = 5
_MAX_TIMESTAMP_DELTA_BYTES = 10


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One record to encode; the batch assigns its offset."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The fixed header of a record batch; ``length`` includes the header itself."""

    base_offset: int
    length: int
    version: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    record_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """The offset after this batch's last record."""
        return self.base_offset + self.last_offset_delta + 1


def _put_nullable_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        out.append(0)
        return
    put_varint(out, len(data) + 1)
    out += data


def _nullable_size(data: bytes | None) -> int:
    return 1 if data is None else varint_size(len(data) + 1) + len(data)


def _encode_header_names(headers: tuple[tuple[str, bytes], ...]) -> list[tuple[bytes, bytes]]:
    encoded: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        try:
            encoded.append((name.encode("utf-8"), value))
        except UnicodeEncodeError as exc:
            raise InvalidRecordError(
                f"header name {name!r} is not valid Unicode: {exc.reason}; "
                "use a name without unpaired surrogates",
                header=name,
            ) from exc
    return encoded


def _record_body(offset_delta: int, timestamp_delta: int, record: BatchRecord) -> bytearray:
    body = bytearray()
    put_varint(body, offset_delta)
    put_varint(body, zigzag(timestamp_delta))
    _put_nullable_bytes(body, record.key)
    _put_nullable_bytes(body, record.value)
    if not record.headers:
        body.append(0)
        return body
    headers = _encode_header_names(record.headers)
    put_varint(body, len(headers))
    for name, value in headers:
        put_varint(body, len(name))
        body += name
        put_varint(body, len(value))
        body += value
    return body


def _check_base_offset(base_offset: int) -> None:
    if not 0 <= base_offset <= _INT64_MAX:
        raise InvalidOffsetError(
            f"base offset {base_offset} is outside 0 .. 2**63 - 1", offset=base_offset
        )


def _check_timestamp(timestamp: int) -> None:
    if not _INT64_MIN <= timestamp <= _INT64_MAX:
        raise InvalidRecordError(
            f"record timestamp {timestamp} does not fit in a signed 64-bit integer; "
            "use milliseconds since the Unix epoch",
            timestamp=timestamp,
        )


def encode_batch(records: Sequence[BatchRecord], base_offset: int = 0) -> bytes:
    """Encode ``records`` as one batch whose first record has ``base_offset``.

    Raises EmptyRecordsError for an empty sequence, InvalidRecordError for a
    timestamp outside the signed 64-bit range or a header name that is not
    valid Unicode, and RecordTooLargeError when the batch would exceed the
    2 GiB limit of its 32-bit length field.
    """
    if not records:
        raise EmptyRecordsError("a record batch needs at least one record; got none")
    _check_base_offset(base_offset)

    first_timestamp = records[0].timestamp
    max_timestamp = first_timestamp
    body = bytearray()
    for offset_delta, record in enumerate(records):
        _check_timestamp(record.timestamp)
        max_timestamp = max(max_timestamp, record.timestamp)
        encoded = _record_body(offset_delta, record.timestamp - first_timestamp, record)
        put_varint(body, len(encoded))
        body += encoded

    length = BATCH_HEADER_SIZE + len(body)
    if length > _INT32_MAX or len(records) > _INT32_MAX:
        raise RecordTooLargeError(
            f"record batch of {len(records)} records takes {length} bytes, over the "
            f"{_INT32_MAX}-byte limit of the batch format; send fewer or smaller records",
            size=length,
            max_size=_INT32_MAX,
        )

    batch = bytearray(
        _HEADER.pack(
            base_offset,
            length,
            BATCH_VERSION,
            0,
            0,
            len(records) - 1,
            first_timestamp,
            max_timestamp,
            len(records),
        )
    )
    batch += body
    _CRC_FIELD.pack_into(batch, _CRC_OFFSET, crc32c.crc32c(memoryview(batch)[_CRC_START:]))
    return bytes(batch)


def record_size_estimate(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()
) -> int:
    """Return an upper bound on the bytes one record takes inside a batch.

    The bound is exact except for the offset and timestamp deltas, which are
    counted at their widest varint size. A batch holding only this record
    takes at most ``BATCH_HEADER_SIZE`` more bytes.
    """
    size = _MAX_OFFSET_DELTA_BYTES + _MAX_TIMESTAMP_DELTA_BYTES
    size += _nullable_size(key) + _nullable_size(value)
    if not headers:
        # A header count of 0 takes one byte.
        return varint_size(size + 1) + size + 1
    size += varint_size(len(headers))
    for name, header_value in _encode_header_names(tuple(headers)):
        size += varint_size(len(name)) + len(name)
        size += varint_size(len(header_value)) + len(header_value)
    return varint_size(size) + size


def read_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse and sanity-check the batch header at ``pos`` without reading the records.

    Raises CorruptBatchError when fewer than ``BATCH_HEADER_SIZE`` bytes
    remain or a field is impossible. Impossible fields are an unknown
    version, set attribute bits, a length no larger than the header, a record
    count that does not match the last offset delta, and a negative base
    offset.
    """
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptBatchError(
            f"record batch header at byte {pos} is cut short: {len(buf) - pos} bytes "
            f"of {BATCH_HEADER_SIZE} are present",
            position=pos,
        )
    header = BatchHeader(*_HEADER.unpack_from(buf, pos))
    problem = _header_problem(header)
    if problem is not None:
        raise CorruptBatchError(
            f"invalid record batch header at byte {pos}: {problem}", position=pos
        )
    return header


def _header_problem(header: BatchHeader) -> str | None:
    if header.version != BATCH_VERSION:
        return f"version {header.version}, expected {BATCH_VERSION}"
    if header.length <= BATCH_HEADER_SIZE:
        return (
            f"batch length {header.length} is not larger than the {BATCH_HEADER_SIZE}-byte header"
        )
    if header.base_offset < 0:
        return f"negative base offset {header.base_offset}"
    if header.attributes != 0:
        return f"attributes {header.attributes:#x} set bits that version 1 does not define"
    if header.record_count < 1:
        return f"record count {header.record_count} is below 1"
    if header.last_offset_delta != header.record_count - 1:
        return (
            f"last offset delta {header.last_offset_delta} does not match "
            f"record count {header.record_count}"
        )
    if header.max_timestamp < header.first_timestamp:
        return (
            f"max timestamp {header.max_timestamp} is below "
            f"first timestamp {header.first_timestamp}"
        )
    return None


def with_base_offset(batch: bytes | bytearray | memoryview, base_offset: int) -> bytes:
    """Return a copy of ``batch`` with its base offset set; the CRC stays valid."""
    if len(batch) < BATCH_HEADER_SIZE:
        raise CorruptBatchError(
            f"record batch of {len(batch)} bytes is shorter than "
            f"its {BATCH_HEADER_SIZE}-byte header"
        )
    _check_base_offset(base_offset)
    patched = bytearray(batch)
    _BASE_OFFSET.pack_into(patched, 0, base_offset)
    return bytes(patched)


def _check_whole_batch(batch: memoryview) -> BatchHeader:
    header = read_batch_header(batch)
    if header.length != len(batch):
        raise CorruptBatchError(
            f"record batch header gives a length of {header.length} bytes but the buffer "
            f"has {len(batch)} bytes",
            base_offset=header.base_offset,
        )
    actual = crc32c.crc32c(batch[_CRC_START:])
    if actual != header.crc:
        raise CorruptBatchError(
            f"CRC-32C mismatch in record batch at base offset {header.base_offset}: "
            f"stored {header.crc:#010x}, computed {actual:#010x}",
            base_offset=header.base_offset,
        )
    return header


def _decode_records(
    batch: memoryview, header: BatchHeader, keep: bool = True
) -> list[StoredRecord]:
    """Check every record of ``batch``; return them when ``keep``, else an empty list.

    Without ``keep`` the records are walked without copying keys, values
    or headers, which is most of the cost of a decode.
    """
    records: list[StoredRecord] = []
    pos = BATCH_HEADER_SIZE
    end = len(batch)
    max_timestamp = header.first_timestamp
    for index in range(header.record_count):
        length, pos = get_varint(batch, pos, end)
        record_end = pos + length
        if record_end > end:
            raise CorruptBatchError(
                f"record {index} of the batch at base offset {header.base_offset} runs "
                f"{record_end - end} bytes past the batch end",
                base_offset=header.base_offset,
            )
        if keep:
            record, pos = _decode_record(batch, pos, record_end, header)
            offset, timestamp = record.offset, record.timestamp
            records.append(record)
        else:
            offset, timestamp, pos = _skip_record(batch, pos, record_end, header)
        if pos != record_end:
            raise CorruptBatchError(
                f"record {index} of the batch at base offset {header.base_offset} is "
                f"{record_end - pos} bytes longer than its fields",
                base_offset=header.base_offset,
            )
        if offset != header.base_offset + index:
            raise CorruptBatchError(
                f"record {index} of the batch at base offset {header.base_offset} has "
                f"offset delta {offset - header.base_offset}, expected {index}",
                base_offset=header.base_offset,
            )
        if index == 0 and timestamp != header.first_timestamp:
            raise CorruptBatchError(
                f"first record of the batch at base offset {header.base_offset} has "
                f"timestamp {timestamp}, header says {header.first_timestamp}",
                base_offset=header.base_offset,
            )
        if timestamp > max_timestamp:
            max_timestamp = timestamp

    if pos != end:
        raise CorruptBatchError(
            f"record batch at base offset {header.base_offset} has {end - pos} bytes "
            "after its last record",
            base_offset=header.base_offset,
        )
    if max_timestamp != header.max_timestamp:
        raise CorruptBatchError(
            f"record batch at base offset {header.base_offset} has max timestamp "
            f"{header.max_timestamp} in its header but {max_timestamp} in its records",
            base_offset=header.base_offset,
        )
    return records


def _skip(pos: int, size: int, end: int, what: str) -> int:
    """Return the position after a field of ``size`` bytes at ``pos``, checked against ``end``."""
    if pos + size > end:
        raise CorruptBatchError(
            f"record {what} of {size} bytes at byte {pos} of a record batch runs past "
            "the end of its record"
        )
    return pos + size


def _take(batch: memoryview, pos: int, size: int, end: int, what: str) -> tuple[bytes, int]:
    after = _skip(pos, size, end, what)
    return bytes(batch[pos:after]), after


def _take_nullable(batch: memoryview, pos: int, end: int, what: str) -> tuple[bytes | None, int]:
    marker, pos = get_varint(batch, pos, end)
    if marker == 0:
        return None, pos
    return _take(batch, pos, marker - 1, end, what)


def _decode_record(
    batch: memoryview, pos: int, end: int, header: BatchHeader
) -> tuple[StoredRecord, int]:
    offset_delta, pos = get_varint(batch, pos, end)
    timestamp_delta, pos = get_varint(batch, pos, end)
    key, pos = _take_nullable(batch, pos, end, "key")
    value, pos = _take_nullable(batch, pos, end, "value")
    header_count, pos = get_varint(batch, pos, end)

    headers: list[tuple[str, bytes]] = []
    for _ in range(header_count):
        name_length, pos = get_varint(batch, pos, end)
        raw_name, pos = _take(batch, pos, name_length, end, "header name")
        value_length, pos = get_varint(batch, pos, end)
        header_value, pos = _take(batch, pos, value_length, end, "header value")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptBatchError(
                f"header name in the batch at base offset {header.base_offset} is not UTF-8"
            ) from exc
        headers.append((name, header_value))

    record = StoredRecord(
        offset=header.base_offset + offset_delta,
        timestamp=header.first_timestamp + unzigzag(timestamp_delta),
        key=key,
        value=value,
        headers=tuple(headers),
    )
    return record, pos


def _skip_record(
    batch: memoryview, pos: int, end: int, header: BatchHeader
) -> tuple[int, int, int]:
    """Check the fields of the record at ``pos`` like _decode_record, copying nothing.

    Returns the record's offset, its timestamp and the position after it.
    """
    offset_delta, pos = get_varint(batch, pos, end)
    timestamp_delta, pos = get_varint(batch, pos, end)
    for what in ("key", "value"):
        marker, pos = get_varint(batch, pos, end)
        if marker:
            pos = _skip(pos, marker - 1, end, what)
    header_count, pos = get_varint(batch, pos, end)
    for _ in range(header_count):
        name_length, pos = get_varint(batch, pos, end)
        name_end = _skip(pos, name_length, end, "header name")
        try:
            str(batch[pos:name_end], "utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptBatchError(
                f"header name in the batch at base offset {header.base_offset} is not UTF-8"
            ) from exc
        value_length, pos = get_varint(batch, name_end, end)
        pos = _skip(pos, value_length, end, "header value")
    offset = header.base_offset + offset_delta
    return offset, header.first_timestamp + unzigzag(timestamp_delta), pos


def verify_batch(batch: bytes | bytearray | memoryview) -> None:
    """Check that ``batch`` is exactly one well-formed batch with a matching CRC-32C.

    Raises CorruptBatchError naming the first problem found.
    """
    view = memoryview(batch)
    _decode_records(view, _check_whole_batch(view), keep=False)


def decode_batch(batch: bytes | bytearray | memoryview) -> list[StoredRecord]:
    """Verify ``batch`` like :func:`verify_batch` and return its records in offset order."""
    view = memoryview(batch)
    return _decode_records(view, _check_whole_batch(view))


def iter_batches(buf: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    """Yield each whole batch in ``buf``, stopping before a cut-off batch at the end.

    Only the headers are checked (not the CRC). A complete header with an
    impossible field raises CorruptBatchError.
    """
    view = memoryview(buf)
    pos = 0
    while len(view) - pos >= BATCH_HEADER_SIZE:
        header = read_batch_header(view, pos)
        if header.length > len(view) - pos:
            return
        yield view[pos : pos + header.length]
        pos += header.length
