"""docker-compose.cluster.yml: three Kaflow containers form a Raft group that outlives its leader.

Each test starts its own compose project (docker-compose.cluster.yml with
cluster/docker/compose.test.yml) under a random name, with Docker choosing the
published 127.0.0.1 ports, and removes its containers, network and volumes
afterwards, also when the test fails.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.compose.docker_harness import (
    CLUSTER_COMPOSE_FILE,
    TEST_COMPOSE_FILE,
    TEST_TIMEOUT_S,
    Compose,
    get_json_or_none,
    requires_compose_tests,
    run_command,
    wait_for,
    wait_healthy,
)
from tests.harness import http_json

pytestmark = [pytest.mark.compose, requires_compose_tests, pytest.mark.timeout(TEST_TIMEOUT_S)]

SERVICES = ("n1", "n2", "n3")
TOPIC = "orders"
PARTITIONS = 3
START_TIMEOUT_S = 120.0
ELECTION_TIMEOUT_S = 60.0
REPLICATION_TIMEOUT_S = 30.0

# Partition -> [(offset, key, value)] in offset order.
PartitionRecords = dict[int, list[tuple[int, str, str]]]


@dataclass(frozen=True)
class Leadership:
    """A leader that every polled node agrees on, and its term."""

    leader: str
    term: int


@pytest.fixture
def cluster(kaflow_image: str) -> Iterator[Compose]:
    compose = Compose(
        project=f"kaflowtest{uuid.uuid4().hex[:10]}",
        files=(CLUSTER_COMPOSE_FILE, TEST_COMPOSE_FILE),
        env={
            "KAFLOW_IMAGE": kaflow_image,
            "KAFLOW_CLUSTER_SECRET": secrets.token_hex(32),
            # Port 0: Docker picks a free host port on 127.0.0.1 for each node.
            "KAFLOW_N1_HTTP_PORT": "0",
            "KAFLOW_N2_HTTP_PORT": "0",
            "KAFLOW_N3_HTTP_PORT": "0",
        },
    )
    try:
        compose.up()
        yield compose
    finally:
        try:
            # Printed output appears in pytest's report only when the test fails.
            print(compose.logs())
        finally:
            compose.down()


def cluster_view(url: str) -> Any:
    return get_json_or_none(f"{url}/v1/cluster")


def all_members_connected(url: str) -> bool:
    view = cluster_view(url)
    if not isinstance(view, dict):
        return False
    members = view["members"]
    return len(members) == len(SERVICES) and all(member["connected"] for member in members)


def find_leadership(urls: Mapping[str, str], min_term: int) -> Leadership | None:
    """Return the leader if every node is ready and agrees on one leader in one term >= min_term."""
    views = {service: cluster_view(url) for service, url in urls.items()}
    if not all(isinstance(view, dict) and view.get("ready") is True for view in views.values()):
        return None

    leaders = [service for service, view in views.items() if view["role"] == "leader"]
    if len(leaders) != 1:
        return None
    term = views[leaders[0]]["term"]
    if term < min_term:
        return None
    if any(view["term"] != term or view["leader_id"] is None for view in views.values()):
        return None
    return Leadership(leaders[0], term)


def wait_for_leadership(urls: Mapping[str, str], min_term: int, timeout: float) -> Leadership:
    found: list[Leadership] = []

    def agreed() -> bool:
        leadership = find_leadership(urls, min_term)
        if leadership is not None:
            found.append(leadership)
        return leadership is not None

    def describe() -> str:
        views = {service: cluster_view(url) for service, url in urls.items()}
        return f"no leader in term >= {min_term} that {sorted(urls)} agree on; views: {views}"

    wait_for(agreed, timeout, describe)
    return found[-1]


def produce(url: str, records: list[dict[str, Any]]) -> PartitionRecords:
    """Produce records through one node; return what was written, by partition."""
    _, body = http_json("POST", f"{url}/v1/topics/{TOPIC}/records", {"records": records})
    written: PartitionRecords = {}
    for record, placed in zip(records, body["records"], strict=True):
        written.setdefault(placed["partition"], []).append(
            (placed["offset"], record["key"], record["value"])
        )
    return written


def read_partition(url: str, partition: int, count: int) -> list[tuple[int, str, str]]:
    """Fetch a partition from offset 0 until it has ``count`` records; followers may lag."""
    fetched: list[tuple[int, str, str]] = []

    def complete() -> bool:
        body = get_json_or_none(
            f"{url}/v1/topics/{TOPIC}/partitions/{partition}/records?offset=0&max_records=1000"
        )
        if isinstance(body, dict):
            fetched[:] = [(r["offset"], r["key"], r["value"]) for r in body["records"]]
        return len(fetched) >= count

    wait_for(
        complete,
        REPLICATION_TIMEOUT_S,
        lambda: f"{url} partition {partition}: {len(fetched)} of {count} records",
    )
    return fetched


def merge(target: PartitionRecords, written: PartitionRecords) -> None:
    for partition, records in written.items():
        target.setdefault(partition, []).extend(records)


def test_compose_file_rejects_missing_secret(kaflow_image: str) -> None:
    # kaflow_image is requested because building it installs docker-compose when missing.
    # Compose treats an empty variable like an unset one, and the empty value here
    # also hides a secret from the caller's environment or a .env file.
    result = run_command(
        ["docker-compose", "-f", str(CLUSTER_COMPOSE_FILE), "config", "--quiet"],
        env={"KAFLOW_IMAGE": kaflow_image, "KAFLOW_CLUSTER_SECRET": ""},
        check=False,
    )

    assert result.returncode != 0
    assert "KAFLOW_CLUSTER_SECRET is not set" in result.stderr


@pytest.mark.parametrize(
    "producer_role", ["leader", "follower"], ids=["produce-via-leader", "produce-via-follower"]
)
def test_cluster_reads_back_after_leader_kill(cluster: Compose, producer_role: str) -> None:
    wait_healthy([cluster.container(service) for service in SERVICES], START_TIMEOUT_S)
    urls = {service: cluster.published_url(service) for service in SERVICES}
    before = wait_for_leadership(urls, min_term=0, timeout=ELECTION_TIMEOUT_S)
    followers = [service for service in SERVICES if service != before.leader]
    producer = before.leader if producer_role == "leader" else followers[0]
    reader = followers[1] if producer == followers[0] else followers[0]

    wait_for(
        lambda: all_members_connected(urls[reader]),
        ELECTION_TIMEOUT_S,
        lambda: f"{reader} does not list 3 connected members: {cluster_view(urls[reader])}",
    )

    http_json("POST", f"{urls[producer]}/v1/topics", {"name": TOPIC, "partitions": PARTITIONS})
    expected: PartitionRecords = {}
    for batch in range(3):
        batch_records = [
            {"key": f"customer-{i % 7}", "value": f"order-{batch}-{i}"} for i in range(10)
        ]
        merge(expected, produce(urls[producer], batch_records))
    assert sum(len(written) for written in expected.values()) == 30
    for written in expected.values():
        assert [offset for offset, _, _ in written] == list(range(len(written)))

    cluster.kill(before.leader)
    survivors = {service: urls[service] for service in SERVICES if service != before.leader}
    wait_for_leadership(survivors, min_term=before.term + 1, timeout=ELECTION_TIMEOUT_S)

    for partition, written in expected.items():
        assert read_partition(urls[reader], partition, len(written)) == written

    # Two of three members are a majority: the cluster still takes writes.
    late = produce(urls[reader], [{"key": "late", "value": "after-failover", "partition": 0}])
    assert late == {0: [(len(expected.get(0, [])), "late", "after-failover")]}
    other_survivor = next(service for service in survivors if service != reader)
    assert read_partition(urls[other_survivor], 0, len(expected.get(0, [])) + 1)[-1] == late[0][0]
