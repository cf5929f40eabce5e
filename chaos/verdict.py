"""Input and output types of the checker: run logs, violations and the result."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult", "NodeLog", "RunLogs", "Violation", "ViolationKind"]

# Examples listed per violation; the count covers the rest.
MAX_EXAMPLES = 10


class ViolationKind(enum.Enum):
    """Every property the checker verifies, by the name it reports a failure under."""

    NODE_UNREADABLE = "node_unreadable"
    OFFSET_GAP = "offset_gap"
    REPLICA_DIVERGENCE = "replica_divergence"
    UNEXPECTED_RECORD = "unexpected_record"
    LOST_ACK = "lost_ack"
    ACK_MISMATCH = "ack_mismatch"
    DUPLICATE = "duplicate"
    ORDER = "order"
    COMMIT_BACKWARDS = "commit_backwards"
    CONCURRENT_CONSUMPTION = "concurrent_consumption"
    CONSUMPTION_GAP = "consumption_gap"
    UNAVAILABILITY = "unavailability"


@dataclass
class Violation:
    """One broken property, with the number of cases and the first few of them."""

    kind: ViolationKind
    message: str
    count: int = 1
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "message": self.message,
            "count": self.count,
            "examples": self.examples,
        }


@dataclass
class NodeLog:
    """One partition as one node returned it after the run.

    Each record is the fetch response's record in base64 encoding:
    ``{"offset", "timestamp", "key_b64", "value_b64", "headers"}``.
    """

    log_start_offset: int
    high_watermark: int
    records: list[dict[str, Any]]


@dataclass
class RunLogs:
    """Everything the checker reads about one run.

    ``nodes`` maps node name to partition to :class:`NodeLog`;
    ``node_errors`` maps a node that could not be read to the reason.
    ``resets`` lists explicit offset resets ``{"t", "partition"}`` after which
    a committed offset may go down. ``load_window`` is (start, stop) of the
    producers in run seconds.
    """

    acks: list[dict[str, Any]] = field(default_factory=list)
    consumed: list[dict[str, Any]] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)
    committed: list[dict[str, Any]] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[str, dict[int, NodeLog]] = field(default_factory=dict)
    node_errors: dict[str, str] = field(default_factory=dict)
    load_window: tuple[float, float] = (0.0, 0.0)


@dataclass
class CheckResult:
    """The violations found and the figures of the run."""

    violations: list[Violation]
    stats: dict[str, Any]

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "violations": [violation.to_json() for violation in self.violations],
            "stats": self.stats,
        }


class ViolationCollector:
    """Groups cases of one kind and subject into one Violation with examples."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[ViolationKind, str], Violation] = {}

    def add(self, kind: ViolationKind, subject: str, message: str, **example: Any) -> None:
        """Count one case; the first case's message describes the group."""
        key = (kind, subject)
        violation = self._by_key.get(key)
        if violation is None:
            self._by_key[key] = Violation(kind, message, 1, [example] if example else [])
            return
        violation.count += 1
        if example and len(violation.examples) < MAX_EXAMPLES:
            violation.examples.append(example)

    def violations(self) -> list[Violation]:
        return list(self._by_key.values())
