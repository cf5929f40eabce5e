"""Lazy slices of the Raft journal, its cache of recent entries, and its statistics."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from kaflow.replication.journal_segment import Entry

__all__ = ["EntryCache", "JournalStatistics", "JournalView"]

# Approximate memory of one cached entry besides its payload: the tuple, the
# bytes object header, two ints and the OrderedDict node (CPython 3.11, 64-bit).
_ENTRY_OVERHEAD_BYTES = 200


class JournalView(Sequence[Entry]):
    """Entries of a journal slice, read from the journal when accessed.

    PySyncObj slices the journal from a position to the end and then uses a
    few entries (``log[i:]`` followed by ``[:n]``), so reading lazily keeps a
    slice of a long tail from loading the whole tail into memory.

    A view stays valid while entries are only appended or compacted away
    from the front. Reading an entry after the journal was truncated or
    cleared, or an entry compaction removed, raises InternalError. Slicing a
    view returns a view, and pickling one stores a plain list, which is what
    PySyncObj sends to followers.
    """

    __slots__ = ("_epoch", "_indexes", "_reader")

    def __init__(self, reader: Callable[[int, int], Entry], indexes: range, epoch: int) -> None:
        # reader(log index, epoch) returns the entry or raises when the view is stale.
        self._reader = reader
        self._indexes = indexes
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self._indexes)

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> JournalView: ...

    def __getitem__(self, item: int | slice) -> Entry | JournalView:
        if isinstance(item, slice):
            return JournalView(self._reader, self._indexes[item], self._epoch)
        try:
            index = self._indexes[item]
        except IndexError:
            raise IndexError(
                f"journal slice position {item} out of range for {len(self)} entries"
            ) from None
        return self._reader(index, self._epoch)

    def __iter__(self) -> Iterator[Entry]:
        for index in self._indexes:
            yield self._reader(index, self._epoch)

    def __reversed__(self) -> Iterator[Entry]:
        for index in reversed(self._indexes):
            yield self._reader(index, self._epoch)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JournalView | list | tuple):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __repr__(self) -> str:
        indexes = self._indexes
        return f"JournalView(start={indexes.start}, stop={indexes.stop}, step={indexes.step})"


class EntryCache:
    """Recently added or read entries by log index, evicted least recently used first.

    ``capacity_bytes`` bounds the payload bytes plus a fixed per-entry
    overhead, and 0 disables the cache.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self._capacity_bytes = capacity_bytes
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, index: int) -> Entry | None:
        entry = self._entries.get(index)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(index)
        return entry

    def put(self, index: int, entry: Entry) -> None:
        cost = _cost(entry)
        if cost > self._capacity_bytes:
            return
        old = self._entries.pop(index, None)
        if old is not None:
            self.size_bytes -= _cost(old)
        self._entries[index] = entry
        self.size_bytes += cost
        while self.size_bytes > self._capacity_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size_bytes -= _cost(evicted)

    def discard_below(self, index: int) -> None:
        for cached_index in [i for i in self._entries if i < index]:
            self.size_bytes -= _cost(self._entries.pop(cached_index))

    def clear(self) -> None:
        self._entries.clear()
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def _cost(entry: Entry) -> int:
    return len(entry[0]) + _ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    """A snapshot of a journal's size, durability work and cache use."""

    entries: int
    # first_index > last_index when the journal is empty.
    first_index: int
    last_index: int
    segments: int
    # Bytes in segment files, compacted records still on disk included.
    size_bytes: int
    # Entries added since the last sync(), which a power loss may destroy.
    unsynced_entries: int
    # fdatasync calls on segment files.
    data_fsyncs: int
    # fsync calls on the journal directory.
    directory_fsyncs: int
    # Meta file stores: term and vote changes, commit index, compaction.
    meta_writes: int
    cache_entries: int
    cache_bytes: int
    cache_hits: int
    cache_misses: int
    # Segment file descriptors currently open, the active segment included.
    open_segment_files: int
    # Bytes of torn records removed when the journal was opened.
    torn_bytes_removed: int
    # True after a write or fsync failed. The journal then rejects writes.
    failed: bool
