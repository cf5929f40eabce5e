"""Partitions whose local log ends before their replicated end offset.

A partition has a gap when its local log ends before the end offset that
the replicated state records for it: this node installed a snapshot that
covers records it never received, or restarted with a log shorter than its
own snapshot records. The gap is always at the tail, from the local log end to
the replicated end offset.

Two writers touch a partition with a gap. The Raft apply thread advances
the replicated end offset for every committed append, and the back-fill
task appends records copied from a peer. Offset order is kept by one rule:
while a partition has a gap, apply never writes its log and only advances
the replicated end offset. The back-fill task appends only batches that
start at the local log end and end at or below the replicated end offset,
and closes the gap once the two offsets are equal. Apply's decision and the
back-fill's appends and closing all run under :attr:`GapTracker.lock`, so a
committed append cannot slip in between the back-fill's last check and the
gap closing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Gap", "GapStatistics", "GapTracker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gap:
    """One partition's missing tail, as it was when the gap was opened."""

    topic: str
    partition: int
    # The topic incarnation (the Raft index of its create_topic command).
    topic_id: int
    # Bumped each time a gap opens, so work for an older gap is recognised and dropped.
    generation: int
    # The local log end offset when the gap opened.
    start_offset: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class GapStatistics:
    open_gaps: int
    opened_total: int
    closed_total: int


class GapTracker:
    """The set of open gaps and the lock that orders writes to their logs.

    ``enabled`` is False on a single node, which has no peer to copy from:
    there a short log stays a storage error.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        # Reentrant because apply keeps it across helpers that also acquire it.
        self.lock = threading.RLock()
        # Called (on the thread that opened the gap) whenever a gap opens.
        self.on_opened: Callable[[], None] | None = None
        self._gaps: dict[tuple[str, int], Gap] = {}
        self._generation = 0
        self._opened_total = 0
        self._closed_total = 0

    def open(self, topic: str, partition: int, topic_id: int, local_end: int) -> Gap:
        """Record that the partition's log is missing records from ``local_end`` on."""
        with self.lock:
            self._generation += 1
            gap = Gap(topic, partition, topic_id, self._generation, local_end)
            self._gaps[gap.key] = gap
            self._opened_total += 1
        if self.on_opened is not None:
            self.on_opened()
        return gap

    def get(self, topic: str, partition: int) -> Gap | None:
        with self.lock:
            return self._gaps.get((topic, partition))

    def has_gap(self, topic: str, partition: int) -> bool:
        with self.lock:
            return (topic, partition) in self._gaps

    def is_current(self, gap: Gap) -> bool:
        """Return True while ``gap`` is still open and was not replaced by a newer one."""
        with self.lock:
            return self._gaps.get(gap.key) == gap

    def close(self, gap: Gap) -> bool:
        """Remove ``gap``; return False if it was already closed or replaced."""
        with self.lock:
            if self._gaps.get(gap.key) != gap:
                return False
            del self._gaps[gap.key]
            self._closed_total += 1
            return True

    def discard(self, topic: str, partition: int) -> None:
        """Forget the partition's gap without counting it as filled."""
        with self.lock:
            self._gaps.pop((topic, partition), None)

    def discard_topic(self, topic: str) -> None:
        with self.lock:
            for key in [key for key in self._gaps if key[0] == topic]:
                del self._gaps[key]

    def discard_all(self) -> None:
        with self.lock:
            self._gaps.clear()

    def gaps(self) -> list[Gap]:
        with self.lock:
            return sorted(self._gaps.values(), key=lambda gap: gap.key)

    def statistics(self) -> GapStatistics:
        with self.lock:
            return GapStatistics(len(self._gaps), self._opened_total, self._closed_total)
