"""Idempotent produce against real `kaflow serve` processes: lost replies and kill -9."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import msgpack
import pytest

from tests.harness import HttpError, NodeProcess, http_json, wait_until

RETRIABLE_CODES = frozenset(
    {"not_ready", "leader_not_available", "not_leader", "request_timed_out", "unknown_outcome"}
)
RECORDS_PER_REQUEST = 2
DEADLINE_S = 60.0


def new_producer(node: NodeProcess) -> dict[str, int]:
    body: dict[str, int] = http_json("POST", f"{node.url}/v1/producers")[1]
    return body


def idempotent_body(producer: dict[str, int], number: int) -> dict[str, Any]:
    """Request ``number`` of a stream: two records on partition 0 with their sequences."""
    return {
        "producer_id": producer["producer_id"],
        "producer_epoch": producer["producer_epoch"],
        "base_sequences": {"0": number * RECORDS_PER_REQUEST},
        "records": [
            {"value": f"{number}-{position}", "partition": 0}
            for position in range(RECORDS_PER_REQUEST)
        ],
    }


def produce(node: NodeProcess, topic: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    produced: list[dict[str, Any]] = node.post(f"/v1/topics/{topic}/records", body)["records"]
    return produced


def produce_with_retries(
    node: NodeProcess, topic: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    """Send ``body`` until it succeeds, again after retriable errors and lost connections."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            return produce(node, topic, body)
        except HttpError as exc:
            assert exc.code in RETRIABLE_CODES, exc
        except OSError:
            pass  # the node is down or restarting; node.url changes when it is back
        if time.monotonic() > deadline:
            raise AssertionError(f"no success for {body} within {DEADLINE_S:.0f} s")
        time.sleep(0.05)


def stored_values(node: NodeProcess, topic: str) -> list[str]:
    return [record["value"] for record in node.fetch_all(topic, 0)]


def error_of(call: Any) -> tuple[int, str | None]:
    with pytest.raises(HttpError) as caught:
        call()
    return caught.value.status, caught.value.code


def test_producer_endpoint_allocates_and_bumps(node: NodeProcess) -> None:
    first = new_producer(node)
    second = new_producer(node)
    bumped = node.post("/v1/producers", {"producer_id": first["producer_id"]})
    empty_body = node.post("/v1/producers", {})

    assert first == {"producer_id": 0, "producer_epoch": 0}
    assert second == {"producer_id": 1, "producer_epoch": 0}
    assert bumped == {"producer_id": 0, "producer_epoch": 1}
    assert empty_body == {"producer_id": 2, "producer_epoch": 0}
    assert error_of(lambda: node.post("/v1/producers", {"producer_id": 77})) == (
        404,
        "unknown_producer_id",
    )
    assert error_of(lambda: node.post("/v1/producers", {"producer_id": -1})) == (
        400,
        "malformed_body",
    )
    assert error_of(lambda: node.post("/v1/producers", {"id": 1})) == (400, "malformed_body")


def test_resent_request_gets_original_offsets(node: NodeProcess) -> None:
    node.create_topic("orders", 2)
    node.post("/v1/topics/orders/records", {"records": [{"value": "plain", "partition": 0}]})
    producer = new_producer(node)
    body = {
        "producer_id": producer["producer_id"],
        "producer_epoch": producer["producer_epoch"],
        "base_sequences": {"0": 0, "1": 0},
        "records": [
            {"value": "a", "partition": 0},
            {"value": "b", "partition": 1},
            {"value": "c", "partition": 0},
        ],
    }

    first = produce(node, "orders", body)
    # The client lost the first reply and sends the same request again.
    resent = produce(node, "orders", body)

    assert resent == first
    assert [(meta["partition"], meta["offset"]) for meta in first] == [(0, 1), (1, 0), (0, 2)]
    assert stored_values(node, "orders") == ["plain", "a", "c"]
    assert [record["value"] for record in node.fetch_all("orders", 1)] == ["b"]


def test_msgpack_request_deduplicated(node: NodeProcess) -> None:
    node.create_topic("packed", 1)
    producer = new_producer(node)
    body = msgpack.packb(
        {**idempotent_body(producer, 0), "records": [{"value": b"\x00\xff", "partition": 0}]}
    )

    def send() -> Any:
        request = urllib.request.Request(
            f"{node.url}/v1/topics/packed/records", data=body, method="POST"
        )
        request.add_header("Content-Type", "application/msgpack")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    assert send() == send()
    assert len(node.fetch_all("packed", 0)) == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"base_sequences": None}, 400, "malformed_body"),
        ({"producer_epoch": "0"}, 400, "malformed_body"),
        ({"base_sequences": {"00": 0}}, 400, "malformed_body"),
        ({"base_sequences": {"0": -1}}, 400, "malformed_body"),
        ({"base_sequences": {}}, 400, "malformed_body"),
        ({"base_sequences": {"0": 0, "1": 0}}, 400, "invalid_request"),
        ({"records": [{"value": "no partition"}]}, 400, "invalid_record"),
        ({"base_sequences": {"0": 4}}, 409, "out_of_order_sequence"),
        ({"producer_epoch": 1}, 409, "invalid_producer_epoch"),
        ({"producer_id": 12345}, 404, "unknown_producer_id"),
    ],
    ids=[
        "partial-fields",
        "epoch-type",
        "leading-zero-key",
        "negative-sequence",
        "empty-sequences",
        "extra-partition",
        "record-without-partition",
        "sequence-gap",
        "future-epoch",
        "unknown-producer",
    ],
)
def test_idempotent_request_rejected(
    node: NodeProcess, change: dict[str, Any], status: int, code: str
) -> None:
    node.create_topic("checked", 2)
    producer = new_producer(node)
    body = {**idempotent_body(producer, 0), **change}

    assert error_of(lambda: produce(node, "checked", body)) == (status, code)
    assert node.fetch_all("checked", 0) == []


def test_retry_after_kill_gets_original_offsets(node: NodeProcess) -> None:
    node.create_topic("ledger", 1)
    producer = new_producer(node)
    first = produce(node, "ledger", idempotent_body(producer, 0))
    second = produce(node, "ledger", idempotent_body(producer, 1))

    node.kill()
    node.start()
    retried = produce(node, "ledger", idempotent_body(producer, 1))
    following = produce(node, "ledger", idempotent_body(producer, 2))

    assert retried == second
    assert [meta["offset"] for meta in first + second] == [0, 1, 2, 3]
    assert [meta["offset"] for meta in following] == [4, 5]
    assert stored_values(node, "ledger") == ["0-0", "0-1", "1-0", "1-1", "2-0", "2-1"]


def test_kill_during_stream_stores_each_record_once(node: NodeProcess) -> None:
    node.create_topic("stream", 1)
    producer = new_producer(node)
    requests = 60
    acked: dict[int, list[dict[str, Any]]] = {}
    failures: list[BaseException] = []

    def stream() -> None:
        try:
            for number in range(requests):
                acked[number] = produce_with_retries(
                    node, "stream", idempotent_body(producer, number)
                )
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=stream)
    writer.start()
    wait_until(lambda: len(acked) >= 15 or bool(failures), DEADLINE_S, "15 acked requests")
    node.kill()
    node.start()
    writer.join(timeout=DEADLINE_S * 2)

    assert not writer.is_alive()
    assert failures == []
    values = stored_values(node, "stream")
    expected = [f"{n}-{p}" for n in range(requests) for p in range(RECORDS_PER_REQUEST)]
    assert [value for value, count in Counter(values).items() if count > 1] == []
    assert values == expected
    for number, metadata in acked.items():
        offsets = [meta["offset"] for meta in metadata]
        assert offsets == [number * RECORDS_PER_REQUEST + p for p in range(RECORDS_PER_REQUEST)]
