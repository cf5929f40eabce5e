"""RaftJournal memory use: entries stay on disk, not in Python memory."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from kaflow.replication.journal import RaftJournal

ENTRY_BYTES = 64 * 1024
# 1600 entries of 64 KiB: 100 MiB of payload.
ENTRY_COUNT = 1600
MiB = 1024 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmRSS missing from /proc/self/status")


def payload(index: int) -> bytes:
    return index.to_bytes(8, "big") * (ENTRY_BYTES // 8)


def test_100_mib_memory_bounded(tmp_path: Path) -> None:
    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    try:
        traced_before, _ = tracemalloc.get_traced_memory()
        with RaftJournal(tmp_path, cache_bytes=4 * MiB) as journal:
            for index in range(1, ENTRY_COUNT + 1):
                journal.add(payload(index), index, 1)
                if index % 100 == 0:
                    journal.sync()
            journal.sync()
            traced_after_adds, _ = tracemalloc.get_traced_memory()

            tracemalloc.reset_peak()
            for position, entry in enumerate(journal[0:]):
                assert entry[0] == payload(position + 1)
            _, traced_peak_reads = tracemalloc.get_traced_memory()
            stats = journal.statistics()
    finally:
        tracemalloc.stop()
    rss_growth = rss_bytes() - rss_before

    assert stats.size_bytes > 100 * MiB
    # The cache contains at most 4 MiB of entries, and the index takes 8 bytes per entry.
    assert traced_after_adds - traced_before < 12 * MiB
    assert traced_peak_reads - traced_before < 12 * MiB
    # Generous: RSS also counts tracemalloc's own bookkeeping and allocator slack.
    assert rss_growth < 50 * MiB
