"""A follower that missed compacted records catches up from its peers (real processes)."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaflow.storage.batch import read_batch_header
from tests.cluster_harness import ClusterMember, ClusterProcess, wait_for
from tests.harness import HttpError

# Small thresholds, so the leader compacts its Raft log many times during the test.
COMPACTION_BYTES = 128 * 1024
COMPACTION_ENTRIES = 40
EXTRA_ARGS = (
    "--raft-compaction-bytes",
    str(COMPACTION_BYTES),
    "--raft-compaction-entries",
    str(COMPACTION_ENTRIES),
    "--fsync",
    "never",
)
PARTITIONS = 2
RECORDS_PER_REQUEST = 25
VALUE_BYTES = 2000
# Generous: a node idles at well under 100 MiB, and only about 3 MB of records flow here.
MAX_RSS_KIB = 300 * 1024


def produce(member: ClusterMember, first: int, count: int) -> None:
    for start in range(first, first + count, RECORDS_PER_REQUEST):
        records = [
            {"partition": i % PARTITIONS, "value": f"{i:08d}-" + "v" * VALUE_BYTES}
            for i in range(start, min(start + RECORDS_PER_REQUEST, first + count))
        ]
        member.post("/v1/topics/t/records", {"records": records}, timeout=30)


def raw_batches(member: ClusterMember, partition: int) -> bytes:
    """Return the partition's whole log as stored, through the internal endpoint."""
    data = b""
    while True:
        url = (
            f"{member.url}/internal/v1/partitions/t/{partition}/batches"
            f"?from={_next_offset(data)}&max_bytes=16777216"
        )
        with urllib.request.urlopen(url, timeout=30) as response:
            chunk: bytes = response.read()
            high_watermark = int(response.headers["Kaflow-High-Watermark"])
        data += chunk
        if not chunk or _next_offset(data) >= high_watermark:
            return data


def _next_offset(data: bytes) -> int:
    position = 0
    next_offset = 0
    while position < len(data):
        header = read_batch_header(data, position)
        next_offset = header.next_offset
        position += header.length
    return next_offset


class RssSampler:
    """Samples a process's VmRSS from /proc in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append(int(line.split()[1]))


def caught_up(
    follower: ClusterMember, leader: ClusterMember, seen: list[str]
) -> Callable[[], bool]:
    """Return a predicate: the follower serves every record exactly as the leader does."""

    def check() -> bool:
        try:
            for partition in range(PARTITIONS):
                if follower.fetch_all("t", partition) != leader.fetch_all("t", partition):
                    return False
        except HttpError as exc:
            # A read of a missing range fails with a retriable error, never with wrong data.
            assert exc.code in {"replica_not_available", "not_ready"}, exc
            seen.append(exc.code or "")
            return False
        except OSError:
            return False
        return True

    return check


def test_catchup_after_compaction_serves_every_record(
    cluster_factory: Callable[..., ClusterProcess],
) -> None:
    cluster = cluster_factory(extra_args=EXTRA_ARGS).start()
    cluster.wait_registered()
    leader = cluster.wait_for_leader()
    leader.create_topic("t", partitions=PARTITIONS)
    follower = next(member for member in cluster.members if member is not leader)
    produce(leader, 0, 100)
    wait_for(caught_up(follower, leader, []), "the follower to hold the first records")
    follower.stop()

    # About 1.4 MB of records, more than ten times the compaction threshold.
    produce(leader, 100, 700)
    status: dict[str, Any] = leader.cluster()
    assert status["extra"]["snapshot_index"] > 0

    errors: list[str] = []
    follower.spawn()
    assert follower.process is not None
    with RssSampler(follower.process.pid) as rss:
        follower.wait_started()
        wait_for(caught_up(follower, leader, errors), "the follower to catch up", timeout=120)

    log = follower.log_path.read_text(errors="replace")
    assert "raft snapshot installed" in log
    assert "catch-up done topic=t" in log
    for partition in range(PARTITIONS):
        assert raw_batches(follower, partition) == raw_batches(leader, partition)
    records = follower.fetch_all("t", 0) + follower.fetch_all("t", 1)
    assert len(records) == 800
    metrics = _metric_values(follower)
    assert metrics["kaflow_catchup_open_gaps"] == 0
    assert metrics["kaflow_catchup_gaps_closed_total"] >= 1
    assert rss.samples
    assert max(rss.samples) < MAX_RSS_KIB


def test_catchup_node_serves_new_writes_after_fill(
    cluster_factory: Callable[..., ClusterProcess],
) -> None:
    cluster = cluster_factory(extra_args=EXTRA_ARGS).start()
    cluster.wait_registered()
    leader = cluster.wait_for_leader()
    leader.create_topic("t", partitions=PARTITIONS)
    follower = next(member for member in cluster.members if member is not leader)
    follower.stop()
    produce(leader, 0, 400)

    cluster.restart(follower)
    wait_for(caught_up(follower, leader, []), "the follower to catch up", timeout=120)
    produce(leader, 400, 50)

    wait_for(caught_up(follower, leader, []), "the follower to apply new writes")
    for partition in range(PARTITIONS):
        offsets = [record["offset"] for record in follower.fetch_all("t", partition)]
        assert offsets == list(range(len(offsets)))


def _metric_values(member: ClusterMember) -> dict[str, float]:
    """Return the unlabelled samples of ``member``'s /metrics by name."""
    with urllib.request.urlopen(member.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            values[name] = float(value)
    return values
