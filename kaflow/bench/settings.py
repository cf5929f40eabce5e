"""Settings of the benchmark runs, checked before a run starts."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "E2E_HEADER_SIZE",
    "ConsumeSettings",
    "E2eSettings",
    "KeyDistribution",
    "KeyMode",
    "ProduceSettings",
    "RunLimit",
    "parse_key_distribution",
]

# Hard bound on every run, applied even when --records sets a count.
DEFAULT_MAX_DURATION_S = 300.0
# Bytes at the start of each e2e record value: the send time and the sequence number.
E2E_HEADER_SIZE = 16


class KeyMode(enum.Enum):
    NONE = "none"
    UNIFORM = "uniform"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True)
class KeyDistribution:
    """Choice of record keys: none, uniform over ``cardinality`` keys, or sequential."""

    mode: KeyMode
    cardinality: int = 0

    def key(self, index: int, rng: random.Random) -> bytes | None:
        """Return the key of the record with sequence number ``index``."""
        if self.mode is KeyMode.NONE:
            return None
        if self.mode is KeyMode.UNIFORM:
            return b"key-%d" % rng.randrange(self.cardinality)
        return b"key-%d" % index


def parse_key_distribution(text: str) -> KeyDistribution:
    """Parse ``none``, ``sequential`` or ``uniform:K``, or raise ValueError naming those forms."""
    if text == "none":
        return KeyDistribution(KeyMode.NONE)
    if text == "sequential":
        return KeyDistribution(KeyMode.SEQUENTIAL)
    name, separator, count = text.partition(":")
    if name == "uniform" and separator:
        try:
            cardinality = int(count, 10)
        except ValueError:
            cardinality = 0
        if cardinality >= 1:
            return KeyDistribution(KeyMode.UNIFORM, cardinality)
    raise ValueError(
        f"invalid key distribution {text!r}: use none, sequential or uniform:K "
        "with K a whole number of distinct keys, 1 or more"
    )


@dataclass(frozen=True)
class RunLimit:
    """Limit of a run: it stops after ``records``, after ``duration_s`` or at ``max_duration_s``.

    At most one of ``records`` and ``duration_s`` is set; ``max_duration_s``
    always applies.
    """

    records: int | None
    duration_s: float | None
    max_duration_s: float = DEFAULT_MAX_DURATION_S

    def __post_init__(self) -> None:
        if self.records is not None and self.duration_s is not None:
            raise ValueError(
                "invalid run limit: records and duration_s are both set, so set only one"
            )
        if self.records is not None and self.records < 1:
            raise ValueError(f"invalid record count {self.records}: must be 1 or more")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"invalid duration {self.duration_s} s: must be more than 0")
        if not self.max_duration_s > 0:
            raise ValueError(f"invalid max duration {self.max_duration_s} s: must be more than 0")
        if self.duration_s is not None and self.duration_s > self.max_duration_s:
            raise ValueError(
                f"duration {self.duration_s:g} s exceeds the max duration of "
                f"{self.max_duration_s:g} s: raise the max duration or shorten the run"
            )

    @property
    def time_limit_s(self) -> float:
        """Seconds after which the run stops sending or reading."""
        if self.duration_s is None:
            return self.max_duration_s
        return self.duration_s


@dataclass(frozen=True)
class ProduceSettings:
    topic: str
    limit: RunLimit
    record_size: int = 100
    keys: KeyDistribution = KeyDistribution(KeyMode.NONE)
    in_flight: int = 1000
    linger_ms: int = 5
    batch_size: int = 16_384
    # Records per second; 0 sends as fast as the in-flight limit allows.
    target_rate: float = 0.0
    idempotence: bool = True
    create_partitions: int | None = None

    def __post_init__(self) -> None:
        if self.record_size < 0:
            raise ValueError(f"invalid record size {self.record_size}: must be 0 or more")
        if self.in_flight < 1:
            raise ValueError(f"invalid in-flight limit {self.in_flight}: must be 1 or more")
        if self.target_rate < 0:
            raise ValueError(f"invalid target rate {self.target_rate}: must be 0 or more")


@dataclass(frozen=True)
class ConsumeSettings:
    topic: str
    limit: RunLimit


@dataclass(frozen=True)
class E2eSettings:
    topic: str
    # Records per second the producer sends, on a fixed schedule.
    rate: float
    duration_s: float
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    record_size: int = 100
    linger_ms: int = 0
    create_partitions: int | None = None

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"invalid rate {self.rate}: must be more than 0 records/s")
        if self.record_size < E2E_HEADER_SIZE:
            raise ValueError(
                f"invalid record size {self.record_size}: e2e records need at least "
                f"{E2E_HEADER_SIZE} bytes for the send time and sequence number"
            )
        RunLimit(None, self.duration_s, self.max_duration_s)
