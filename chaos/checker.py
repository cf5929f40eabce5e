"""The chaos checker: verifies a run's logs against what every node stores.

Properties, each reported under a :class:`~chaos.verdict.ViolationKind`:

- every node could be read after the run (``node_unreadable``);
- each partition's offsets run from the log start offset to the high
  watermark without holes or repeats (``offset_gap``);
- every node stores the same records (key, value, headers, timestamp) at the
  same offsets (``replica_divergence``);
- every stored record was written by a load producer (``unexpected_record``);
- every acknowledged record is stored at the acknowledged partition and
  offset (``lost_ack``, ``ack_mismatch``), and no record is stored twice
  (``duplicate``);
- in each partition one producer's records follow its send order (``order``);
- the consumer properties of :mod:`chaos.consumer_checks`;
- no gap between acknowledgements exceeds the scenario's bound
  (``unavailability``).

:func:`check` is a pure function of :class:`~chaos.verdict.RunLogs`, so the
tests feed it synthetic logs.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections import defaultdict
from typing import Any

from chaos.consumer_checks import check_consumers
from chaos.verdict import CheckResult, NodeLog, RunLogs, ViolationCollector, ViolationKind

__all__ = ["check", "longest_gap", "record_identity"]

_COMPARED_FIELDS = ("timestamp", "key_b64", "value_b64", "headers")


def record_identity(record: dict[str, Any]) -> tuple[str, int] | None:
    """Return (producer, seq) from a load record's value, or None for any other value."""
    encoded = record.get("value_b64")
    if not isinstance(encoded, str):
        return None
    try:
        value = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    producer, seq = value.get("producer"), value.get("seq")
    if not isinstance(producer, str) or not isinstance(seq, int):
        return None
    return producer, seq


def _check_offsets(node: str, partition: int, log: NodeLog, found: ViolationCollector) -> None:
    expected = log.log_start_offset
    for record in log.records:
        if record["offset"] != expected:
            found.add(
                ViolationKind.OFFSET_GAP,
                f"{node}/{partition}",
                f"node {node} partition {partition}: offsets are not contiguous",
                expected=expected,
                found=record["offset"],
            )
        expected = record["offset"] + 1
    if expected != log.high_watermark:
        found.add(
            ViolationKind.OFFSET_GAP,
            f"{node}/{partition}",
            f"node {node} partition {partition}: records end before the high watermark",
            last_offset_plus_one=expected,
            high_watermark=log.high_watermark,
        )


def _check_replicas(logs: RunLogs, found: ViolationCollector) -> None:
    names = sorted(logs.nodes)
    if len(names) < 2:
        return
    reference = names[0]
    for other in names[1:]:
        partitions = set(logs.nodes[reference]) | set(logs.nodes[other])
        for partition in sorted(partitions):
            mine = logs.nodes[reference].get(partition)
            theirs = logs.nodes[other].get(partition)
            subject = f"{reference}~{other}/{partition}"
            if mine is None or theirs is None:
                found.add(
                    ViolationKind.REPLICA_DIVERGENCE,
                    subject,
                    f"partition {partition} exists on only one of {reference} and {other}",
                )
                continue
            if mine.high_watermark != theirs.high_watermark:
                found.add(
                    ViolationKind.REPLICA_DIVERGENCE,
                    subject,
                    f"partition {partition}: {reference} and {other} differ",
                    reference_high_watermark=mine.high_watermark,
                    other_high_watermark=theirs.high_watermark,
                )
            by_offset = {record["offset"]: record for record in theirs.records}
            for record in mine.records:
                twin = by_offset.get(record["offset"])
                if twin is None:
                    continue
                fields = [f for f in _COMPARED_FIELDS if record.get(f) != twin.get(f)]
                if fields:
                    found.add(
                        ViolationKind.REPLICA_DIVERGENCE,
                        subject,
                        f"partition {partition}: {reference} and {other} differ",
                        offset=record["offset"],
                        fields=fields,
                    )


def _check_acks(
    node: str,
    logs: RunLogs,
    found: ViolationCollector,
) -> None:
    stored: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for partition, log in sorted(logs.nodes.get(node, {}).items()):
        last_seq: dict[str, int] = {}
        for record in log.records:
            identity = record_identity(record)
            if identity is None:
                found.add(
                    ViolationKind.UNEXPECTED_RECORD,
                    f"{node}/{partition}",
                    f"node {node} partition {partition} stores records no producer sent",
                    offset=record["offset"],
                )
                continue
            stored[identity].append((partition, record["offset"]))
            producer, seq = identity
            if producer in last_seq and seq <= last_seq[producer]:
                found.add(
                    ViolationKind.ORDER,
                    f"{node}/{partition}",
                    f"node {node} partition {partition}: a producer's records are out of "
                    "send order",
                    producer=producer,
                    seq=seq,
                    after_seq=last_seq[producer],
                    offset=record["offset"],
                )
            last_seq[producer] = max(seq, last_seq.get(producer, seq))

    for (producer, seq), places in stored.items():
        if len(places) > 1:
            found.add(
                ViolationKind.DUPLICATE,
                node,
                f"node {node} stores records more than once",
                producer=producer,
                seq=seq,
                places=places,
            )

    for ack in logs.acks:
        if ack.get("status") != "ack":
            continue
        places = stored.get((ack["producer"], ack["seq"]), [])
        if not places:
            found.add(
                ViolationKind.LOST_ACK,
                node,
                f"node {node} lacks acknowledged records",
                producer=ack["producer"],
                seq=ack["seq"],
                partition=ack["partition"],
                offset=ack["offset"],
            )
        elif (ack["partition"], ack["offset"]) not in places:
            found.add(
                ViolationKind.ACK_MISMATCH,
                node,
                f"node {node} stores acknowledged records at other offsets than acknowledged",
                producer=ack["producer"],
                seq=ack["seq"],
                acknowledged=[ack["partition"], ack["offset"]],
                stored=places,
            )


def longest_gap(times: list[float], window: tuple[float, float]) -> tuple[float, float]:
    """Return (length, start) of the longest stretch of ``window`` without a time in ``times``."""
    start, stop = window
    points = [start, *sorted(t for t in times if start <= t <= stop), stop]
    best, best_start = 0.0, start
    for before, after in itertools.pairwise(points):
        if after - before > best:
            best, best_start = after - before, before
    return best, best_start


def _latency_percentiles(acks: list[dict[str, Any]]) -> dict[str, float | None]:
    latencies: list[float] = sorted(
        (float(ack["t_ack"]) - float(ack["t_send"])) * 1000
        for ack in acks
        if ack.get("status") == "ack"
    )
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}

    def at(fraction: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(fraction * len(latencies)))], 1)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(latencies[-1], 1)}


def check(logs: RunLogs, max_unavailability_s: float | None) -> CheckResult:
    """Verify every property of the module docstring; returns violations and figures."""
    found = ViolationCollector()
    for node, reason in sorted(logs.node_errors.items()):
        found.add(ViolationKind.NODE_UNREADABLE, node, f"node {node} could not be read: {reason}")
        if "unknown_topic" in reason and node not in logs.nodes:
            # The node responds but has no topic, so everything acknowledged is gone from it.
            _check_acks(node, logs, found)
    for node, partitions in sorted(logs.nodes.items()):
        for partition, log in sorted(partitions.items()):
            _check_offsets(node, partition, log, found)
        _check_acks(node, logs, found)
    _check_replicas(logs, found)
    check_consumers(logs, found)

    ack_times = [ack["t_ack"] for ack in logs.acks if ack.get("status") == "ack"]
    gap, gap_start = longest_gap(ack_times, logs.load_window)
    if max_unavailability_s is not None and gap > max_unavailability_s:
        found.add(
            ViolationKind.UNAVAILABILITY,
            "produce",
            f"no produce succeeded for {gap:.1f} s from t={gap_start:.1f} s, over the "
            f"bound of {max_unavailability_s:g} s",
            gap_s=round(gap, 3),
            start_s=round(gap_start, 3),
        )

    stats: dict[str, Any] = {
        "acked": len(ack_times),
        "send_errors": sum(1 for ack in logs.acks if ack.get("status") == "error"),
        "records_per_node": {
            node: sum(len(log.records) for log in partitions.values())
            for node, partitions in sorted(logs.nodes.items())
        },
        "consumed": len(logs.consumed),
        "commits": len(logs.commits),
        "longest_unavailability_s": round(gap, 3),
        "longest_unavailability_start_s": round(gap_start, 3),
        "max_unavailability_s": max_unavailability_s,
        "latency": _latency_percentiles(logs.acks),
    }
    return CheckResult(found.violations(), stats)
