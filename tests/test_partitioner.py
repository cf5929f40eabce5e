from __future__ import annotations

import ctypes
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaflow.partitioner import Partitioner, key_partition, murmur2

# Published expectations of the Java client's Utils.murmur2 unit test.
JAVA_CLIENT_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def reference_murmur2(data: bytes) -> int:
    """MurmurHash2 with Java int semantics, written independently with ctypes int32."""

    def i32(value: int) -> int:
        return ctypes.c_int32(value).value

    def unsigned_shift(value: int, bits: int) -> int:
        return i32((value & 0xFFFFFFFF) >> bits)

    m = i32(0x5BD1E995)
    h = i32(i32(0x9747B28C) ^ len(data))
    for start in range(0, len(data) // 4 * 4, 4):
        k = i32(int.from_bytes(data[start : start + 4], "little", signed=False))
        k = i32(k * m)
        k = i32(k ^ unsigned_shift(k, 24))
        k = i32(k * m)
        h = i32(i32(h * m) ^ k)
    rest = data[len(data) // 4 * 4 :]
    if rest:
        for position in reversed(range(len(rest))):
            h = i32(h ^ (rest[position] << (8 * position)))
        h = i32(h * m)
    h = i32(h ^ unsigned_shift(h, 13))
    h = i32(h * m)
    return i32(h ^ unsigned_shift(h, 15))


@pytest.mark.parametrize(
    ("key", "expected"), JAVA_CLIENT_VECTORS, ids=[key.decode() for key, _ in JAVA_CLIENT_VECTORS]
)
def test_murmur2_matches_java_client_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(
    ("key", "expected"), JAVA_CLIENT_VECTORS, ids=[key.decode() for key, _ in JAVA_CLIENT_VECTORS]
)
def test_reference_murmur2_matches_java_client_vectors(key: bytes, expected: int) -> None:
    assert reference_murmur2(key) == expected


@given(st.binary(max_size=64))
def test_murmur2_matches_reference(data: bytes) -> None:
    assert murmur2(data) == reference_murmur2(data)


def test_murmur2_of_empty_key() -> None:
    assert murmur2(b"") == reference_murmur2(b"")


def test_key_partition_masks_sign_bit() -> None:
    # murmur2(b"21") is negative: Kafka masks the sign bit instead of taking abs().
    assert key_partition(b"21", 1000) == (-973932308 & 0x7FFFFFFF) % 1000
    assert key_partition(b"21", 1000) != abs(-973932308) % 1000


@given(st.binary(max_size=32), st.integers(min_value=1, max_value=1000))
def test_key_partition_in_range(key: bytes, partitions: int) -> None:
    assert 0 <= key_partition(key, partitions) < partitions


def test_partitioner_uses_key_hash() -> None:
    partitioner = Partitioner()

    chosen = {partitioner.partition("t", b"foobar", 12) for _ in range(5)}

    assert chosen == {key_partition(b"foobar", 12)}


def test_partitioner_spreads_keyless_evenly() -> None:
    partitioner = Partitioner()

    counts = Counter(partitioner.partition("t", None, 4) for _ in range(400))

    assert counts == {0: 100, 1: 100, 2: 100, 3: 100}


def test_partitioner_round_robin_is_per_topic() -> None:
    partitioner = Partitioner()
    partitioner.partition("a", None, 3)
    partitioner.partition("a", None, 3)

    assert partitioner.partition("b", None, 3) == 0
    assert partitioner.partition("a", None, 3) == 2


def test_partitioner_forget_restarts_topic() -> None:
    partitioner = Partitioner()
    partitioner.partition("a", None, 3)

    partitioner.forget("a")

    assert partitioner.partition("a", None, 3) == 0
