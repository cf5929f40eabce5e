"""A member with a damaged partition log detects it by checksum and copies it from peers.

Real node processes: one follower is stopped, a closed segment of its log is
damaged on disk, and it is started again. Every read from it must fail with a
retriable error or return exactly the leader's records, and afterwards all
three members must store byte-identical batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kaflow.storage.batch import read_batch_header
from tests.cluster.test_catchup import raw_batches
from tests.cluster_harness import ClusterMember, ClusterProcess, wait_for
from tests.harness import HttpError, NodeProcess

# Small thresholds: the members take snapshots, so a restart does not replay
# the whole log from the Raft journal and the damage stays in place.
EXTRA_ARGS = (
    "--raft-compaction-bytes",
    str(64 * 1024),
    "--raft-compaction-entries",
    "20",
    "--fsync",
    "never",
)
RECORDS = 300
RECORDS_PER_REQUEST = 10
VALUE_BYTES = 100


def produce(member: NodeProcess) -> None:
    for start in range(0, RECORDS, RECORDS_PER_REQUEST):
        records = [
            {"partition": 0, "value": f"{i:06d}-" + "v" * VALUE_BYTES}
            for i in range(start, start + RECORDS_PER_REQUEST)
        ]
        member.post("/v1/topics/t/records", {"records": records}, timeout=30)


def closed_segments(member: NodeProcess) -> list[Path]:
    """Return the member's segment files of t-0 except the active (last) one."""
    directory = member.data_dir / "logs" / "t-0"
    logs = sorted(directory.glob("*.log"))
    assert len(logs) >= 4, logs
    return logs[:-1]


def second_batch_position(path: Path) -> int:
    data = path.read_bytes()
    return read_batch_header(data, 0).length


def flip_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[second_batch_position(path) + 60] ^= 0x01
    path.write_bytes(bytes(data))


def truncate_segment(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 7)


def serves_leader_records(
    member: ClusterMember, leader: ClusterMember, errors: list[str]
) -> Callable[[], bool]:
    """Return a predicate: ``member`` serves the leader's records; wrong data fails the test."""
    expected = leader.fetch_all("t", 0)

    def check() -> bool:
        try:
            records = member.fetch_all("t", 0)
        except HttpError as exc:
            assert exc.code in {"replica_not_available", "not_ready"}, exc
            errors.append(exc.code or "")
            return False
        except OSError:
            return False
        assert records == expected[: len(records)]
        return len(records) == len(expected)

    return check


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [flip_payload_byte, truncate_segment],
    ids=["flipped-byte", "truncated-segment"],
)
def test_damaged_segment_repaired_from_peers(
    cluster_factory: Callable[..., ClusterProcess], damage: Callable[[Path], None]
) -> None:
    cluster = cluster_factory(extra_args=EXTRA_ARGS).start()
    cluster.wait_registered()
    leader = cluster.wait_for_leader()
    leader.create_topic("t", partitions=1, **{"segment.bytes": 4096})
    produce(leader)
    follower = next(member for member in cluster.members if member is not leader)
    wait_for(serves_leader_records(follower, leader, []), "the follower to hold every record")
    follower.stop()
    segments = closed_segments(follower)
    damage(segments[1])

    errors: list[str] = []
    cluster.restart(follower)
    wait_for(
        serves_leader_records(follower, leader, errors),
        "the damaged follower to serve every record again",
        timeout=90,
    )

    log = follower.log_path.read_text(errors="replace")
    assert "copying it again from peers" in log or "cutting partition log before" in log
    assert "catch-up done topic=t" in log
    expected = raw_batches(leader, 0)
    for member in cluster.members:
        assert raw_batches(member, 0) == expected, member.node_id


@pytest.mark.slow
def test_single_node_never_serves_damage(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", extra_args=EXTRA_ARGS).start()
    try:
        node.create_topic("t", partitions=1, **{"segment.bytes": 4096})
        produce(node)
        node.stop()
        segment = closed_segments(node)[1]
        flip_payload_byte(segment)
        first_offset = int(segment.name.removesuffix(".log"))
        node.start()

        with pytest.raises(HttpError) as raised:
            node.get(f"/v1/topics/t/partitions/0/records?offset={first_offset}&max_records=1000")
        assert raised.value.status == 500
        assert raised.value.code == "corrupt_batch"
        wait_for(
            lambda: "no peer to copy it from topic=t partition=0" in node.log_path.read_text(),
            "the node to log the damage",
        )
    finally:
        node.kill()
