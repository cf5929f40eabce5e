"""Shared parts of the client processes: workload settings, payloads, percentiles and results.

A payload is ``size`` bytes. Its first 16 bytes are the send time
(``time.monotonic_ns()``, 8 bytes big-endian) and a sequence number
(8 bytes big-endian), so that an end-to-end consumer can time each record.
The rest is random bytes, drawn once per run.
"""

from __future__ import annotations

import math
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HEADER",
    "Result",
    "Settings",
    "latency_summary",
    "make_payload",
    "read_header",
]

HEADER = struct.Struct(">QQ")


@dataclass(frozen=True)
class Settings:
    """One workload's parameters, the same for every system."""

    endpoint: dict[str, Any]
    # Topic, stream or key name; unique per workload run.
    name: str
    size: int
    records: int
    # Records sent and not yet acknowledged, at most (produce).
    window: int = 1000
    # Records read, and acknowledged or committed, per request (consume).
    batch: int = 1000
    warmup: int = 200
    rate: int = 2000
    duration_s: float = 10.0
    timeout_s: float = 120.0


@dataclass
class Result:
    """Figures of one workload run, printed by the client process as one JSON line."""

    records: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    errors: int = 0
    latencies_us: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, size: int) -> dict[str, Any]:
        rate = self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {
            "records": self.records,
            "elapsed_s": round(self.elapsed_s, 6),
            "records_per_s": round(rate, 1),
            "mb_per_s": round(rate * size / 1e6, 3),
            "cpu_s": round(self.cpu_s, 4),
            "cpu_us_per_record": round(self.cpu_s * 1e6 / self.records, 2)
            if self.records
            else None,
            "errors": self.errors,
            "latency_ms": latency_summary(self.latencies_us),
            **self.extra,
        }


def make_payload(size: int) -> bytearray:
    """Return a random payload of ``size`` bytes (at least the 16-byte header)."""
    if size < HEADER.size:
        raise ValueError(f"record size {size} is below the {HEADER.size}-byte timing header")
    return bytearray(os.urandom(size))


def stamp(payload: bytearray, sent_ns: int, sequence: int) -> bytes:
    HEADER.pack_into(payload, 0, sent_ns, sequence)
    return bytes(payload)


def read_header(value: bytes) -> tuple[int, int]:
    sent_ns, sequence = HEADER.unpack_from(value, 0)
    return int(sent_ns), int(sequence)


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending list: rank ceil(fraction x count)."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_us: list[int]) -> dict[str, float] | None:
    if not latencies_us:
        return None
    ordered = sorted(latencies_us)
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 0.50) / 1000,
        "p99": percentile(ordered, 0.99) / 1000,
        "p99_9": percentile(ordered, 0.999) / 1000,
        "max": ordered[-1] / 1000,
    }


class Timer:
    """Wall-clock and process CPU time of a timed phase."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def finish(self, result: Result) -> None:
        result.elapsed_s = time.perf_counter() - self.start
        result.cpu_s = time.process_time() - self.cpu_start
