"""Resource gauges and counters of one node, read from its components at scrape time.

The values come from the components' own statistics: the open-file cache
the partition logs share, the group commit proposer, the record ranges
still to copy from a peer, and the Raft journal's size and fsync counts. The counters
restart from zero when the node restarts, which Prometheus's ``rate()``
handles as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kaflow.errors import KaflowError, NotReadyError
from kaflow.replication.journal import JournalStatistics

if TYPE_CHECKING:
    from kaflow.replication.replica import Replica

__all__ = ["ReplicaCollector"]


class ReplicaCollector(Collector):
    """Exports the file cache, group commit and Raft journal statistics of a replica."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def collect(self) -> Iterator[Metric]:
        yield from self._file_cache_families()
        yield from self._group_commit_families()
        yield from self._catchup_families()
        journal = self._journal_statistics()
        if journal is not None:
            yield from _journal_families(journal)

    def _file_cache_families(self) -> Iterator[Metric]:
        logs = self._replica.logs
        if logs is None:
            return
        statistics = logs.files.statistics()
        yield _gauge(
            "kaflow_log_open_files",
            "Segment and index files the partition logs hold open.",
            statistics["open_files"],
        )
        yield _gauge(
            "kaflow_log_max_open_files",
            "Limit on open segment and index files (--max-open-files).",
            statistics["max_open"],
        )
        yield _gauge(
            "kaflow_log_leased_files",
            "Open log files in use by a read or write right now.",
            statistics["leased"],
        )
        yield _counter(
            "kaflow_log_file_cache_hits",
            "Log file leases served by an already open file.",
            statistics["hits"],
        )
        yield _counter(
            "kaflow_log_file_cache_misses",
            "Log file leases that had to open the file.",
            statistics["misses"],
        )
        yield _counter(
            "kaflow_log_file_cache_evictions",
            "Idle log files closed to stay under the open-file limit.",
            statistics["evictions"],
        )
        yield _counter(
            "kaflow_log_file_cache_waits",
            "Log file leases that waited because every open file was in use.",
            statistics["waits"],
        )

    def _group_commit_families(self) -> Iterator[Metric]:
        try:
            statistics = self._replica.proposer.stats
        except NotReadyError:
            return
        yield _counter(
            "kaflow_group_commit_requests",
            "Produce requests this node proposed through group commit.",
            statistics.requests,
        )
        yield _counter(
            "kaflow_group_commit_commands",
            "Raft commands group commit proposed; requests per command is the batching factor.",
            statistics.commands,
        )

    def _catchup_families(self) -> Iterator[Metric]:
        try:
            state, _ = self._replica.check_ready()
        except KaflowError:  # not ready, or stopped after a failure: no gauges until it is
            return
        statistics = state.gaps.statistics()
        yield _gauge(
            "kaflow_catchup_open_gaps",
            "Record ranges this node has not copied from a peer yet (after a snapshot "
            "install or a repair); 0 means every partition log is complete.",
            statistics.open_gaps,
        )
        yield _counter(
            "kaflow_catchup_gaps_closed",
            "Record ranges copied from a peer since the node started.",
            statistics.closed_total,
        )

    def _journal_statistics(self) -> JournalStatistics | None:
        try:
            raft = self._replica.raft
        except NotReadyError:
            return None
        journal = raft.journal
        if journal is None:
            return None
        return journal.statistics()


def _journal_families(statistics: JournalStatistics) -> Iterator[Metric]:
    yield _gauge("kaflow_raft_journal_entries", "Entries in the Raft journal.", statistics.entries)
    yield _gauge(
        "kaflow_raft_journal_segments", "Segment files of the Raft journal.", statistics.segments
    )
    yield _gauge(
        "kaflow_raft_journal_size_bytes",
        "Bytes in the Raft journal's segment files.",
        statistics.size_bytes,
    )
    yield _gauge(
        "kaflow_raft_journal_unsynced_entries",
        "Journal entries not yet fsynced, which a power loss may destroy.",
        statistics.unsynced_entries,
    )
    yield _gauge(
        "kaflow_raft_journal_failed",
        "1 after the journal failed a write or fsync, else 0.",
        int(statistics.failed),
    )
    yield _counter(
        "kaflow_raft_journal_fsyncs",
        "fdatasync calls on Raft journal segment files.",
        statistics.data_fsyncs,
    )
    yield _counter(
        "kaflow_raft_journal_directory_fsyncs",
        "fsync calls on the Raft journal directory.",
        statistics.directory_fsyncs,
    )
    yield _counter(
        "kaflow_raft_journal_meta_writes",
        "Stores of the journal meta file (term, vote, commit index).",
        statistics.meta_writes,
    )


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    # CounterMetricFamily appends the _total suffix to the exported sample.
    counter = CounterMetricFamily(name, documentation)
    counter.add_metric([], value)
    return counter
