"""Choose the partition of a produced record.

Keyed records use the Java Kafka client's default partitioner: murmur2 of
the key bytes, made non-negative with ``& 0x7fffffff``, modulo the partition
count. A record with the same key therefore lands in the same partition as
it would with a Kafka producer.

Keyless records go round robin, per topic and per node: each keyless record
takes the next partition after the previous keyless record of that topic on
this node. Kafka's newer producers instead stick to one partition per batch;
round robin spreads single-record requests evenly too.
"""

from __future__ import annotations

import itertools
import threading

__all__ = ["Partitioner", "key_partition", "murmur2"]

_MASK32 = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24


def murmur2(data: bytes) -> int:
    """Return the 32-bit MurmurHash2 of ``data`` as a signed int, as Kafka's Java client does."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32

    whole_words = length - length % 4
    for i in range(0, whole_words, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k

    # The tail bytes fall through from 3 to 1, as in the reference switch.
    tail = length % 4
    if tail == 3:
        h ^= data[whole_words + 2] << 16
    if tail >= 2:
        h ^= data[whole_words + 1] << 8
    if tail >= 1:
        h ^= data[whole_words]
        h = (h * _M) & _MASK32

    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15

    return h - (1 << 32) if h & 0x80000000 else h


def key_partition(key: bytes, partitions: int) -> int:
    """Return the partition for ``key`` among ``partitions``, as Kafka's default partitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Partitioner:
    """Assigns partitions to records: murmur2 for keys, round robin per topic otherwise."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def partition(self, topic: str, key: bytes | None, partitions: int) -> int:
        """Return the partition for one record of ``topic`` with ``partitions`` partitions."""
        if key is not None:
            return key_partition(key, partitions)
        with self._lock:
            counter = self._counters.setdefault(topic, itertools.count())
            return next(counter) % partitions

    def forget(self, topic: str) -> None:
        """Drop the round-robin position of a deleted topic."""
        with self._lock:
            self._counters.pop(topic, None)
