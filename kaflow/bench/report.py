"""The figures of a benchmark run and their text and JSON forms."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from kaflow.bench.histogram import LatencyHistogram

__all__ = ["PERCENTILES", "BenchResult", "StopReason", "format_text", "to_json"]

# Reported latency percentiles: (JSON field name, percent).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
)
# Throughput in MB/s counts 10**6 bytes per MB.
_BYTES_PER_MB = 1_000_000


class StopReason(enum.Enum):
    RECORDS = "records"
    DURATION = "duration"
    MAX_DURATION = "max_duration"
    # A send raised at once (for example a record over the producer's buffer), so the run ended.
    ERROR = "error"


@dataclass
class BenchResult:
    """Counts, timings and latencies of one run.

    ``records`` and ``total_bytes`` count records acknowledged (produce), read
    (consume) or received (e2e). ``total_bytes`` is the sum of key and value
    lengths. ``latency`` records microseconds.
    """

    mode: str
    topic: str
    stop_reason: StopReason
    elapsed_s: float
    cpu_s: float
    records: int = 0
    total_bytes: int = 0
    errors: int = 0
    first_error: str | None = None
    latency: LatencyHistogram | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def mb_per_s(self) -> float:
        return self.total_bytes / _BYTES_PER_MB / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cpu_us_per_record(self) -> float | None:
        return self.cpu_s * 1e6 / self.records if self.records else None


def _latency_ms(histogram: LatencyHistogram | None) -> dict[str, float | int | None] | None:
    if histogram is None:
        return None
    figures: dict[str, float | int | None] = {"count": histogram.count}
    for name, percent in PERCENTILES:
        value = histogram.percentile(percent)
        figures[name] = None if value is None else value / 1000
    figures["max"] = None if histogram.max is None else histogram.max / 1000
    mean = histogram.mean
    figures["mean"] = None if mean is None else round(mean / 1000, 3)
    return figures


def to_json(result: BenchResult) -> dict[str, Any]:
    """Return the result as a JSON-ready dict. docs/bench.md describes each field."""
    cpu_per_record = result.cpu_us_per_record()
    return {
        "mode": result.mode,
        "topic": result.topic,
        "stopped_by": result.stop_reason.value,
        "records": result.records,
        "bytes": result.total_bytes,
        "errors": result.errors,
        "first_error": result.first_error,
        "counts": dict(result.counts),
        "elapsed_s": round(result.elapsed_s, 6),
        "throughput": {
            "records_per_s": round(result.records_per_s(), 3),
            "mb_per_s": round(result.mb_per_s(), 6),
        },
        "latency_ms": _latency_ms(result.latency),
        "cpu": {
            "seconds": round(result.cpu_s, 6),
            "us_per_record": None if cpu_per_record is None else round(cpu_per_record, 3),
        },
    }


def _format_ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def format_text(result: BenchResult) -> str:
    """Return a few human-readable lines with the same figures as :func:`to_json`."""
    figures = to_json(result)
    lines = [
        f"{result.mode} topic={result.topic} stopped_by={figures['stopped_by']}",
        f"records: {result.records} ({result.total_bytes} bytes) in {result.elapsed_s:.3f} s, "
        f"errors: {result.errors}",
        f"throughput: {figures['throughput']['records_per_s']:.1f} records/s, "
        f"{figures['throughput']['mb_per_s']:.3f} MB/s",
    ]
    for name, count in result.counts.items():
        lines.append(f"{name}: {count}")

    latency = figures["latency_ms"]
    if latency is not None:
        parts = [f"{name.replace('_', '.')}={_format_ms(latency[name])}" for name, _ in PERCENTILES]
        parts.append(f"max={_format_ms(latency['max'])}")
        lines.append("latency: " + " ".join(parts))

    per_record = figures["cpu"]["us_per_record"]
    per_record_text = "-" if per_record is None else f"{per_record:.1f} us/record"
    lines.append(f"client cpu: {result.cpu_s:.3f} s, {per_record_text}")
    if result.first_error is not None:
        lines.append(f"first error: {result.first_error}")
    return "\n".join(lines)
