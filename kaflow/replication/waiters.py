"""Wake long-poll fetches when a partition changes.

The state machine reports changed partitions on the Raft apply thread. The
node forwards them to the event loop, where :meth:`PartitionWaiters.wake`
sets the event of every fetch watching one of them. A fetch registers its
event before it reads the high watermark, so a change that lands between the
read and the wait still wakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["PartitionWaiters"]

PartitionKey = tuple[str, int]


class PartitionWaiters:
    """Events of the fetches waiting on each partition; used on the event loop only."""

    def __init__(self) -> None:
        self._events: dict[PartitionKey, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, topic: str, partition: int) -> Iterator[asyncio.Event]:
        """Register an event that is set when the partition changes, until the block exits."""
        key = (topic, partition)
        event = asyncio.Event()
        self._events.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self._events.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[key]

    def wake(self, keys: Iterable[PartitionKey]) -> None:
        for key in keys:
            for event in self._events.get(key, ()):
                event.set()

    def wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    def waiting(self) -> int:
        """Return how many fetches are waiting (for tests and status)."""
        return sum(len(events) for events in self._events.values())
