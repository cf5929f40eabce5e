"""Shared helpers for the storage tests: batch builders and file inspection."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from kaflow.broker import StoredRecord
from kaflow.storage import (
    BatchRecord,
    FileCache,
    LogConfig,
    PartitionLog,
    decode_batch,
    encode_batch,
    iter_batches,
)


def make_batch(
    count: int = 1, timestamp: int = 1_000, value_size: int = 10, tag: str = ""
) -> bytes:
    """Encode ``count`` records with keys k0.., values of ``value_size`` bytes."""
    records = [
        BatchRecord(
            timestamp=timestamp + index,
            key=f"k{index}".encode(),
            value=(tag.encode() + b"v" * value_size)[:value_size],
        )
        for index in range(count)
    ]
    return encode_batch(records)


def open_log(directory: Path, files: FileCache | None = None, **config: int) -> PartitionLog:
    return PartitionLog.open(directory, LogConfig(**config), files or FileCache(16))


def decode_all(data: bytes) -> list[StoredRecord]:
    return [record for batch in iter_batches(data) for record in decode_batch(batch)]


def read_all(log: PartitionLog) -> list[StoredRecord]:
    """Return every record from the log start offset to the end."""
    return log.read_records(log.log_start_offset, 1 << 30, 1 << 30)


def segment_files(directory: Path, suffix: str) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.name.endswith(suffix))


def open_descriptors_under(directory: Path) -> int:
    """Count this process's descriptors that point at files under ``directory``."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            count += 1
    return count


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.005)
