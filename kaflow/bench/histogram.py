"""A log-bucketed latency histogram in the style of HdrHistogram.

Values are non-negative integers (the benchmarks record microseconds).
Values below 256 each get their own bucket, so they are exact. A larger
value ``v`` falls into a bucket of width ``2**s``, where ``s =
v.bit_length() - 8``, so every bucket spans 128 to 256 times its width.
A reported percentile is the highest value of its bucket, capped at the
recorded maximum, and therefore differs from the true nearest-rank value by
less than 1/128 (0.79 %) of that value. Memory grows with the number of
distinct buckets, about 128 per power of two in the recorded range.
"""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["RELATIVE_PRECISION", "LatencyHistogram"]

# Bits kept of each value: the bucket's lower bound is the value with all
# lower bits cleared.
_SIGNIFICANT_BITS = 8
# Upper bound of the relative error of percentile(), from the bucket width.
RELATIVE_PRECISION = 1 / 2 ** (_SIGNIFICANT_BITS - 1)


def _bucket_lower_bound(value: int) -> int:
    shift = max(0, value.bit_length() - _SIGNIFICANT_BITS)
    return (value >> shift) << shift


def _bucket_upper_bound(lower_bound: int) -> int:
    shift = max(0, lower_bound.bit_length() - _SIGNIFICANT_BITS)
    return lower_bound + (1 << shift) - 1


class LatencyHistogram:
    """Counts of non-negative integer values in logarithmic buckets."""

    def __init__(self) -> None:
        # Bucket lower bound -> number of values recorded in the bucket.
        self._counts: dict[int, int] = {}
        self._total = 0
        self._sum = 0
        self._min: int | None = None
        self._max: int | None = None

    @property
    def count(self) -> int:
        """Number of recorded values."""
        return self._total

    @property
    def min(self) -> int | None:
        """Smallest recorded value (exact), or None when empty."""
        return self._min

    @property
    def max(self) -> int | None:
        """Largest recorded value (exact), or None when empty."""
        return self._max

    @property
    def mean(self) -> float | None:
        """Exact mean of the recorded values, or None when empty."""
        if self._total == 0:
            return None
        return self._sum / self._total

    def record(self, value: int) -> None:
        """Add one value. A negative value raises ValueError."""
        if value < 0:
            raise ValueError(f"invalid histogram value {value}: must be 0 or more")
        bucket = _bucket_lower_bound(value)
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        self._total += 1
        self._sum += value
        if self._min is None or value < self._min:
            self._min = value
        if self._max is None or value > self._max:
            self._max = value

    def percentile(self, percent: float) -> int | None:
        """Return the nearest-rank value at ``percent`` (0 to 100), or None when empty.

        The nearest rank is ceil(percent / 100 * count), at least 1. The
        result is the highest value of the bucket holding that rank, capped
        at the recorded maximum.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"invalid percentile {percent}: must be in 0..100")
        if self._max is None:
            return None

        # The decimal form of ``percent`` keeps 99.9 % of 1000 at rank 999, not 1000.
        rank = max(1, math.ceil(Fraction(str(percent)) * self._total / 100))
        seen = 0
        for bucket in sorted(self._counts):
            seen += self._counts[bucket]
            if seen >= rank:
                return min(_bucket_upper_bound(bucket), self._max)
        return self._max
