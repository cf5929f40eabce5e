"""A real node on a small tmpfs rejects writes while the disk is full and recovers after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.fs.mounts import TmpfsMount, is_mounted
from tests.harness import HttpError, NodeProcess, http_json, wait_until

DISK_BYTES = 32 * 1024 * 1024
# The node keeps twice one maximum Raft command (the larger of this and 2 MiB,
# plus framing) free for produce requests.
MAX_REQUEST_BYTES = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[TmpfsMount]:
    mount = TmpfsMount(tmp_path / "disk", DISK_BYTES)
    mount.mount()
    try:
        yield mount
    finally:
        mount.unmount()
    assert not is_mounted(tmp_path / "disk")


@pytest.fixture
def node(disk: TmpfsMount) -> Iterator[NodeProcess]:
    process = NodeProcess(
        disk.data_dir / "node", extra_args=("--max-request-bytes", str(MAX_REQUEST_BYTES))
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _produce(node: NodeProcess, value: str) -> tuple[int, object]:
    return http_json(
        "POST", node.url + "/v1/topics/orders/records", {"records": [{"value": value}]}
    )


def test_full_disk_rejects_produce_with_disk_full(disk: TmpfsMount, node: NodeProcess) -> None:
    node.create_topic("orders")
    disk.fill()

    with pytest.raises(HttpError) as raised:
        _produce(node, "rejected")

    assert raised.value.status == 507
    assert raised.value.code == "disk_full"
    error = raised.value.body["error"]
    assert error["retriable"] is True
    assert str(node.data_dir) in error["message"]
    assert error["details"]["free_bytes"] < error["details"]["reserve_bytes"]


def test_full_disk_keeps_node_up_and_readable(disk: TmpfsMount, node: NodeProcess) -> None:
    node.create_topic("orders")
    _produce(node, "stored before the disk filled")
    disk.fill()

    for _ in range(3):
        with pytest.raises(HttpError):
            _produce(node, "rejected")

    assert node.process is not None and node.process.poll() is None
    assert node.get("/v1/health/ready") == {"status": "ready"}
    records = node.fetch_all("orders", 0)
    assert [record["value"] for record in records] == ["stored before the disk filled"]


def test_produce_succeeds_after_space_frees(disk: TmpfsMount, node: NodeProcess) -> None:
    node.create_topic("orders")
    disk.fill()
    with pytest.raises(HttpError):
        _produce(node, "rejected")

    disk.drain()

    def accepted() -> bool:
        try:
            _produce(node, "after the disk was freed")
        except HttpError:
            return False
        return True

    wait_until(accepted, 30.0, f"produce still rejected after freeing space\n{node.tail_log()}")
    records = node.fetch_all("orders", 0)
    assert [record["value"] for record in records] == ["after the disk was freed"]


def test_disk_filled_by_writes_rejects_before_enospc(disk: TmpfsMount, node: NodeProcess) -> None:
    node.create_topic("orders")
    value = "x" * 60_000
    stored = 0
    with pytest.raises(HttpError) as raised:
        # 32 MiB cannot hold 1000 records of 60 kB in the journal and the log.
        for _ in range(1000):
            _produce(node, value)
            stored += 1

    assert raised.value.code == "disk_full"
    assert stored > 0
    assert disk.free_bytes() > 0
    assert node.get("/v1/health/ready") == {"status": "ready"}
    assert len(node.fetch_all("orders", 0)) == stored
