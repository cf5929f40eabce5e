from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from kaflow.bench.histogram import RELATIVE_PRECISION, LatencyHistogram

PERCENTS = (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)


def nearest_rank(sorted_values: list[int], percent: float) -> int:
    rank = max(1, math.ceil(Fraction(str(percent)) * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def filled(values: list[int]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def lognormal_values(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(8, 2)) for _ in range(count)]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lognormal_values(20_000, seed=1), id="lognormal"),
        pytest.param([random.Random(2).randrange(10**9) for _ in range(5_000)], id="uniform-wide"),
        pytest.param(list(range(1, 1001)), id="one-to-thousand"),
        pytest.param([123_456_789] * 10, id="constant"),
        pytest.param([0, 2**40], id="extremes"),
    ],
)
def test_histogram_percentiles_within_precision(values: list[int]) -> None:
    histogram = filled(values)
    ordered = sorted(values)
    for percent in PERCENTS:
        expected = nearest_rank(ordered, percent)
        reported = histogram.percentile(percent)
        assert reported is not None
        assert abs(reported - expected) <= expected * RELATIVE_PRECISION, (percent, expected)


def test_histogram_small_values_exact() -> None:
    values = [random.Random(3).randrange(256) for _ in range(3_000)]
    histogram = filled(values)
    ordered = sorted(values)
    for percent in PERCENTS:
        assert histogram.percentile(percent) == nearest_rank(ordered, percent)


def test_histogram_count_min_max_mean_exact() -> None:
    values = lognormal_values(1_000, seed=4)
    histogram = filled(values)
    assert histogram.count == len(values)
    assert histogram.min == min(values)
    assert histogram.max == max(values)
    assert histogram.mean == pytest.approx(sum(values) / len(values))


def test_histogram_percentile_not_above_max() -> None:
    histogram = filled([1000, 1001, 100_001])
    assert histogram.percentile(100) == 100_001


def test_histogram_empty_returns_none() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(50) is None
    assert histogram.max is None
    assert histogram.mean is None


def test_histogram_negative_value_rejected() -> None:
    with pytest.raises(ValueError, match="invalid histogram value -1"):
        LatencyHistogram().record(-1)


@pytest.mark.parametrize("percent", [-0.1, 100.1], ids=["below-zero", "above-hundred"])
def test_histogram_percent_out_of_range_rejected(percent: float) -> None:
    with pytest.raises(ValueError, match="invalid percentile"):
        filled([1]).percentile(percent)
