from __future__ import annotations

import pytest

from kaflow.storage import CorruptBatchError
from kaflow.storage.varint import get_varint, put_varint, unzigzag, varint_size, zigzag


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 16_383, 16_384, 2**31 - 1, 2**64, 2**65 - 1], ids=str
)
def test_varint_round_trip_and_size(value: int) -> None:
    out = bytearray()
    put_varint(out, value)

    decoded, end = get_varint(memoryview(bytes(out)), 0, len(out))

    assert decoded == value
    assert end == len(out) == varint_size(value)


@pytest.mark.parametrize("value", [0, -1, 1, -2, 2**63 - 1, -(2**63), 2**64, -(2**64)], ids=str)
def test_zigzag_round_trip(value: int) -> None:
    assert unzigzag(zigzag(value)) == value
    assert zigzag(value) >= 0


def test_zigzag_orders_small_magnitudes_first() -> None:
    assert [zigzag(v) for v in (0, -1, 1, -2, 2)] == [0, 1, 2, 3, 4]


def test_varint_truncated_raises() -> None:
    with pytest.raises(CorruptBatchError, match="truncated or overlong varint at byte 0"):
        get_varint(memoryview(b"\x80\x80"), 0, 2)


def test_varint_overlong_raises() -> None:
    data = b"\xff" * 11 + b"\x01"

    with pytest.raises(CorruptBatchError, match="overlong"):
        get_varint(memoryview(data), 0, len(data))
