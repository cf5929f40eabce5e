"""Varints as the record batch format writes them.

A varint is unsigned LEB128: 7 bits per byte, low group first, the high bit
set on every byte but the last. Signed values are first mapped to unsigned
with zigzag (0, -1, 1, -2 ... become 0, 1, 2, 3 ...), so small magnitudes
stay short whatever their sign.
"""

from __future__ import annotations

from kaflow.storage.errors import CorruptBatchError

__all__ = ["get_varint", "put_varint", "unzigzag", "varint_size", "zigzag"]

# A varint of up to 70 bits takes at most 10 bytes. The widest value stored is
# the zigzag form of a 65-bit timestamp delta.
MAX_VARINT_BYTES = 10


def put_varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint_size(value: int) -> int:
    size = 1
    while value > 0x7F:
        value >>= 7
        size += 1
    return size


def zigzag(value: int) -> int:
    # The general form of (n << 1) ^ (n >> 63), because timestamp deltas can need 65 bits.
    return value << 1 if value >= 0 else (-value << 1) - 1


def unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def get_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos`` and return it with the position after it."""
    # Most varints in a batch (lengths, deltas, header counts) take one byte.
    if pos < end:
        first = buf[pos]
        if first < 0x80:
            return first, pos + 1
    value = 0
    shift = 0
    for index in range(pos, min(end, pos + MAX_VARINT_BYTES)):
        byte = buf[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise CorruptBatchError(f"truncated or overlong varint at byte {pos} of a record batch")
