from __future__ import annotations

import concurrent.futures
import threading

import pytest

from kaflow.client import (
    Admin,
    ClientClosedError,
    Consumer,
    Producer,
    RecordMetadata,
    TopicPartition,
)
from tests.harness import NodeProcess


def test_sync_producer_from_several_threads(node: NodeProcess) -> None:
    with Admin(node.url) as admin:
        admin.create_topic("orders", 3)

    threads_count, per_thread = 4, 25
    results: list[concurrent.futures.Future[RecordMetadata]] = []
    lock = threading.Lock()

    with Producer(node.url, linger_ms=2) as producer:

        def work(thread_index: int) -> None:
            for i in range(per_thread):
                future = producer.send("orders", f"{thread_index}-{i}".encode())
                with lock:
                    results.append(future)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        producer.flush()

        assert all(future.done() for future in results)

    stored = [record["value"] for p in range(3) for record in node.fetch_all("orders", p)]
    expected = [f"{t}-{i}" for t in range(threads_count) for i in range(per_thread)]
    assert sorted(stored) == sorted(expected)


def test_sync_consumer_reads_and_commits(node: NodeProcess) -> None:
    node.create_topic("orders")
    with Producer(node.url) as producer:
        metadata = producer.send("orders", b"paid", partition=0).result(timeout=30)
    assert metadata.offset == 0

    with Consumer(node.url, group_id="inventory", auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0)])
        assert consumer.assignment() == {TopicPartition("orders", 0)}
        records = consumer.poll(timeout_ms=5_000)
        consumer.commit()

        assert [r.value for r in records] == [b"paid"]
        assert consumer.committed(("orders", 0)) == 1
        assert consumer.position(("orders", 0)) == 1


def test_sync_consumer_poll_from_threads(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)
    for partition in (0, 1):
        node.post(
            "/v1/topics/orders/records", {"records": [{"value": "v", "partition": partition}]}
        )

    with Consumer(node.url, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0), ("orders", 1)])
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda _: consumer.poll(timeout_ms=200), range(4)))

    offsets = sorted((r.partition, r.offset) for batch in batches for r in batch)
    assert offsets == [(0, 0), (1, 0)]


def test_sync_clients_closed_raise(node: NodeProcess) -> None:
    producer = Producer(node.url)
    producer.close()
    producer.close()

    with pytest.raises(ClientClosedError):
        producer.send("orders", b"v", partition=0)

    consumer = Consumer(node.url)
    consumer.close()
    with pytest.raises(ClientClosedError):
        consumer.poll()
