"""The Prometheus metrics of one node, in a registry of its own.

Each :class:`NodeMetrics` has its own ``CollectorRegistry`` rather than
prometheus_client's global default one, so several nodes in one process
(as in tests) never mix their series.

Two kinds of values live in it:

- Events are counted when they happen: request durations
  (``kaflow_http_request_duration_seconds``) and the records and bytes
  produced and fetched per topic. These are cheap increments.
- State is read when Prometheus scrapes, by collectors that query the broker
  and its components (:mod:`kaflow.observability.broker_collector`,
  :mod:`kaflow.observability.replica_collector`), so the write path does no
  metrics work for gauges.

The registry also carries prometheus_client's process collector
(``process_open_fds``, ``process_resident_memory_bytes``, CPU seconds; Linux
only), and its Python platform and garbage collector collectors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from kaflow.broker import ProduceRecord, StoredRecord
from kaflow.observability.broker_collector import BrokerCollector, BrokerState
from kaflow.observability.replica_collector import ReplicaCollector

if TYPE_CHECKING:
    from kaflow.replication.replica import Replica

__all__ = ["REQUEST_DURATION_BUCKETS", "NodeMetrics", "record_payload_bytes"]

# Upper bounds in seconds. A fetch long poll may wait up to 30 s
# (max_wait_ms is capped at 30000), so the buckets reach past that.
REQUEST_DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def record_payload_bytes(record: ProduceRecord | StoredRecord) -> int:
    """Return the bytes of a record's key, value, header keys (UTF-8) and header values."""
    size = len(record.key or b"") + len(record.value or b"")
    for name, value in record.headers:
        size += len(name.encode("utf-8", "surrogatepass")) + len(value)
    return size


class NodeMetrics:
    """The registry of one node with its request histogram and record counters.

    ``replica`` adds the node's resource statistics (open log files, group
    commit, Raft journal fsyncs); without it only the broker's state is read.
    ``process`` False leaves out prometheus_client's process, platform and
    garbage collector collectors.
    """

    def __init__(
        self, broker: BrokerState, replica: Replica | None = None, *, process: bool = True
    ) -> None:
        self.registry = CollectorRegistry()
        self._request_duration = Histogram(
            "kaflow_http_request_duration_seconds",
            "HTTP requests by operation (the handler's name) and status; a fetch includes "
            "its long-poll wait.",
            ["operation", "status"],
            buckets=REQUEST_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._records_in = Counter(
            "kaflow_records_in",
            "Records this node accepted in produce requests that committed.",
            ["topic"],
            registry=self.registry,
        )
        self._bytes_in = Counter(
            "kaflow_bytes_in",
            "Key, value and header bytes of the records counted by kaflow_records_in_total.",
            ["topic"],
            registry=self.registry,
        )
        self._records_out = Counter(
            "kaflow_records_out",
            "Records this node returned to fetch requests.",
            ["topic"],
            registry=self.registry,
        )
        self._bytes_out = Counter(
            "kaflow_bytes_out",
            "Key, value and header bytes of the records counted by kaflow_records_out_total.",
            ["topic"],
            registry=self.registry,
        )

        self.registry.register(BrokerCollector(broker))
        if replica is not None:
            self.registry.register(ReplicaCollector(replica))
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def observe_request(self, operation: str, status: int | str, seconds: float) -> None:
        """Record one finished HTTP request."""
        self._request_duration.labels(operation, str(status)).observe(seconds)

    def count_produced(self, topic: str, records: Iterable[ProduceRecord]) -> None:
        """Count records of a produce request that Raft committed."""
        count = 0
        size = 0
        for record in records:
            count += 1
            size += record_payload_bytes(record)
        self._records_in.labels(topic).inc(count)
        self._bytes_in.labels(topic).inc(size)

    def count_fetched(self, topic: str, records: Iterable[StoredRecord]) -> None:
        """Count records returned by a fetch."""
        count = 0
        size = 0
        for record in records:
            count += 1
            size += record_payload_bytes(record)
        self._records_out.labels(topic).inc(count)
        self._bytes_out.labels(topic).inc(size)

    def forget_topic(self, topic: str) -> None:
        """Drop the record counters of a deleted topic so its series stop being exported.

        NOTE: only the node that handled the delete request calls this. Other
        members that served the topic export its counters until they restart.
        """
        for counter in (self._records_in, self._bytes_in, self._records_out, self._bytes_out):
            with contextlib.suppress(KeyError):  # the topic may have no series in this counter
                counter.remove(topic)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """Return the exposition for an ``Accept`` header and its content type.

        The Prometheus text format 0.0.4 is the default; OpenMetrics text is
        returned when the scraper requests ``application/openmetrics-text``.
        Must run on the event loop, because the collectors read the broker.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
