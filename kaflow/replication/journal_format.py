"""Byte layout of the Raft journal's segment files and meta file (format version 1).

These functions take and return bytes and do no I/O, so they can be tested by
feeding bytes. Integers are unsigned and big-endian, and every CRC is CRC-32C
(Castagnoli) as computed by ``crc32c.crc32c``. docs/journal.md describes the
same layout together with the recovery rules.

Segment file ``<base index, 20 decimal digits>.seg``::

    offset  size  field
    0       4     magic b"KFJS"
    4       2     format version (1)
    6       2     reserved, written as 0
    8       8     base index: the index of the first record ever written to
                  this segment, equal to the number in the file name
    16      ...   records, back to back

Record (24-byte header, then the payload)::

    offset  size  field
    0       4     payload length L in bytes
    4       4     CRC-32C of bytes 8 .. 24 + L (index, term and payload)
    8       8     Raft log index
    16      8     Raft term
    24      L     payload: the PySyncObj command, stored unchanged

Records of one segment have consecutive indexes starting at the base index,
and each segment starts at the index after the previous segment's last record.

Meta file ``journal.meta``, replaced as a whole by writing
``journal.meta.tmp`` and renaming it::

    offset  size  field
    0       4     magic b"KFJM"
    4       2     format version (1)
    6       2     flags: bit 0 is set when a vote is recorded
    8       8     current term
    16      8     commit index
    24      8     log start index: records below it were removed by compaction
    32      4     length V of the voted-for node id in bytes (0 without a vote)
    36      V     voted-for node id, UTF-8
    36 + V  4     CRC-32C of bytes 0 .. 36 + V
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import crc32c

__all__ = [
    "FORMAT_VERSION",
    "LOCK_FILE_NAME",
    "MAX_PAYLOAD_BYTES",
    "MAX_U64",
    "META_FILE_NAME",
    "META_TEMP_FILE_NAME",
    "RECORD_HEADER_SIZE",
    "SEGMENT_HEADER_SIZE",
    "JournalMeta",
    "RecordHeader",
    "contiguous_record_crc",
    "crc_update",
    "decode_meta",
    "decode_record_header",
    "decode_segment_header",
    "encode_meta",
    "encode_record_header",
    "encode_segment_header",
    "parse_segment_file_name",
    "record_crc",
    "segment_file_name",
    "unpack_record_header",
]

FORMAT_VERSION = 1

SEGMENT_MAGIC = b"KFJS"
META_MAGIC = b"KFJM"

META_FILE_NAME = "journal.meta"
META_TEMP_FILE_NAME = "journal.meta.tmp"
LOCK_FILE_NAME = "journal.lock"
SEGMENT_SUFFIX = ".seg"

# magic, format version, reserved, base index
_SEGMENT_HEADER = struct.Struct(">4sHHQ")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size

# payload length, CRC-32C, index, term
_RECORD_HEADER = struct.Struct(">IIQQ")
RECORD_HEADER_SIZE = _RECORD_HEADER.size
# The CRC covers the header from the index field on, then the payload.
_CRC_START = 8

# magic, format version, flags, current term, commit index, log start index,
# voted-for length
_META_FIXED = struct.Struct(">4sHHQQQI")
_META_CRC = struct.Struct(">I")
_META_FLAG_VOTED = 0x1

MAX_U64 = 2**64 - 1
# The record length field is 32 bits wide.
MAX_PAYLOAD_BYTES = 2**32 - 1

_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")


def segment_file_name(base_index: int) -> str:
    """Return the file name of the segment whose first record has ``base_index``."""
    return f"{base_index:020d}{SEGMENT_SUFFIX}"


def parse_segment_file_name(name: str) -> int | None:
    """Return the base index in a segment file name, or None for any other name."""
    match = _SEGMENT_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1))


def encode_segment_header(base_index: int) -> bytes:
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, base_index)


def decode_segment_header(data: bytes) -> int:
    """Return the base index in a segment header.

    Raises ValueError naming the problem when ``data`` is short, has the wrong
    magic or has a format version this code cannot read.
    """
    if len(data) < SEGMENT_HEADER_SIZE:
        raise ValueError(f"segment header is {len(data)} bytes, expected {SEGMENT_HEADER_SIZE}")
    magic, version, _reserved, base_index = _SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise ValueError(f"segment magic is {magic!r}, expected {SEGMENT_MAGIC!r}")
    if version != FORMAT_VERSION:
        raise ValueError(f"segment format version is {version}, this code reads {FORMAT_VERSION}")
    return int(base_index)


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """The fixed 24 bytes in front of every record's payload."""

    payload_length: int
    crc: int
    index: int
    term: int

    @property
    def record_size(self) -> int:
        """Bytes the whole record takes in the segment, header included."""
        return RECORD_HEADER_SIZE + self.payload_length


def record_crc(header: bytes | memoryview, payload: bytes | memoryview) -> int:
    """Return the CRC-32C of a record: its header from the index field on, then the payload."""
    return crc_update(crc32c.crc32c(header[_CRC_START:RECORD_HEADER_SIZE]), payload)


def crc_update(crc: int, data: bytes | memoryview) -> int:
    """Extend a CRC-32C computed so far with ``data``."""
    return crc32c.crc32c(data, crc)


def encode_record_header(index: int, term: int, payload: bytes) -> bytes:
    """Return the 24-byte header of a record. The payload follows it unchanged."""
    without_crc = _RECORD_HEADER.pack(len(payload), 0, index, term)
    crc = record_crc(without_crc, payload)
    return _RECORD_HEADER.pack(len(payload), crc, index, term)


def decode_record_header(data: bytes | memoryview, offset: int = 0) -> RecordHeader:
    """Unpack the record header at ``offset`` without checking the CRC."""
    length, crc, index, term = _RECORD_HEADER.unpack_from(data, offset)
    return RecordHeader(payload_length=length, crc=crc, index=index, term=term)


def unpack_record_header(data: bytes, offset: int) -> tuple[int, int, int, int]:
    """Return (payload length, CRC, index, term) at ``offset``, for loops over many records."""
    length, crc, index, term = _RECORD_HEADER.unpack_from(data, offset)
    return length, crc, index, term


def contiguous_record_crc(data: memoryview, offset: int, record_size: int) -> int:
    """Return the CRC-32C of the whole record at ``offset`` in ``data``."""
    return crc32c.crc32c(data[offset + _CRC_START : offset + record_size])


@dataclass(frozen=True, slots=True)
class JournalMeta:
    """The journal state that is not a log record: Raft's persistent vote state and bounds."""

    current_term: int = 0
    # None when this node has not voted in current_term.
    voted_for: str | None = None
    # PySyncObj's FileJournal and MemoryJournal (0.3.17) both report 1 before any commit.
    commit_index: int = 1
    # First index that compaction kept, or 0 in a journal that never had a record.
    log_start_index: int = 0


def encode_meta(meta: JournalMeta) -> bytes:
    voted_for = b"" if meta.voted_for is None else meta.voted_for.encode("utf-8")
    flags = 0 if meta.voted_for is None else _META_FLAG_VOTED
    body = (
        _META_FIXED.pack(
            META_MAGIC,
            FORMAT_VERSION,
            flags,
            meta.current_term,
            meta.commit_index,
            meta.log_start_index,
            len(voted_for),
        )
        + voted_for
    )
    return body + _META_CRC.pack(crc32c.crc32c(body))


def decode_meta(data: bytes) -> JournalMeta:
    """Parse a meta file's bytes.

    Raises ValueError naming the problem when the bytes are truncated, fail the
    CRC check or have a format version this code cannot read.
    """
    if len(data) < _META_FIXED.size + _META_CRC.size:
        raise ValueError(f"meta file is {len(data)} bytes, shorter than the fixed part")

    magic, version, flags, term, commit_index, log_start, voted_length = _META_FIXED.unpack_from(
        data
    )
    if magic != META_MAGIC:
        raise ValueError(f"meta magic is {magic!r}, expected {META_MAGIC!r}")
    if version != FORMAT_VERSION:
        raise ValueError(f"meta format version is {version}, this code reads {FORMAT_VERSION}")

    body_size = _META_FIXED.size + voted_length
    if len(data) != body_size + _META_CRC.size:
        raise ValueError(f"meta file is {len(data)} bytes, expected {body_size + _META_CRC.size}")
    (stored_crc,) = _META_CRC.unpack_from(data, body_size)
    if stored_crc != crc32c.crc32c(data[:body_size]):
        raise ValueError("meta file CRC-32C does not match its contents")

    voted_for = None
    if flags & _META_FLAG_VOTED:
        voted_for = data[_META_FIXED.size : body_size].decode("utf-8")
    return JournalMeta(
        current_term=term,
        voted_for=voted_for,
        commit_index=commit_index,
        log_start_index=log_start,
    )
