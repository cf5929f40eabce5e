"""Consumer group member processes for tests, and checks over what they processed.

:class:`MemberProcess` runs ``tests/group_consumer_proc.py`` and collects the
JSON lines it prints. The checks read those lines: which partitions a
member owns now, whether two members ever processed one partition at the
same time, and which offsets were processed how often.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kaflow.client import Producer
from tests.cluster_harness import ClusterProcess
from tests.harness import HttpError, wait_until

__all__ = [
    "CommittedWatcher",
    "MemberProcess",
    "Producing",
    "overlapping_segments",
    "processed_counts",
]

_REPO = Path(__file__).resolve().parent.parent

Event = dict[str, Any]


class MemberProcess:
    """One `tests.group_consumer_proc` child process and the events it printed."""

    def __init__(
        self, root: Path, name: str, bootstrap: Iterable[str], group: str, topic: str, *extra: str
    ) -> None:
        self.name = name
        self.command = [
            sys.executable,
            "-m",
            "tests.group_consumer_proc",
            "--bootstrap",
            ",".join(bootstrap),
            "--group",
            group,
            "--topic",
            topic,
            *extra,
        ]
        self.stderr_path = root / f"{name}.stderr"
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> MemberProcess:
        env = dict(os.environ, PYTHONPATH=str(_REPO))
        with open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=stderr, cwd=_REPO, env=env
            )
        self._reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            event["member"] = self.name
            with self._lock:
                self.events.append(event)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.snapshot() if event["event"] == kind]

    def owned(self) -> set[int]:
        """Return the partitions the member owns after the events printed so far."""
        owned: set[int] = set()
        for event in self.snapshot():
            if event["event"] == "assigned":
                owned |= set(event["partitions"])
            elif event["event"] in ("revoked", "lost"):
                owned -= set(event["partitions"])
            elif event["event"] == "closed":
                owned.clear()
        return owned

    def wait_for(self, predicate: Any, message: str, timeout: float = 30.0) -> None:
        wait_until(lambda: predicate(self), timeout, f"{self.name}: {message}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr)"
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=30)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the member (it commits, leaves the group and exits) and return its status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.name} ignored SIGTERM\n{self.tail()}") from None
        if self._reader is not None:
            self._reader.join(timeout=10)
        return self.process.returncode


class Producing:
    """A thread that produces numbered records round robin over partitions until stopped."""

    def __init__(self, urls: list[str], topic: str, partitions: int, batch: int = 12) -> None:
        self._producer = Producer(urls, linger_ms=5, delivery_timeout_ms=90_000)
        self._topic = topic
        self._partitions = partitions
        self._batch = batch
        self._stop = threading.Event()
        self.sent: list[str] = []
        self.failures: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="producing", daemon=True)

    def start(self) -> Producing:
        self._thread.start()
        return self

    def _run(self) -> None:
        number = 0
        while not self._stop.wait(0.05):
            futures = []
            for _ in range(self._batch):
                value = f"r-{number}"
                futures.append(
                    self._producer.send(
                        self._topic, value.encode(), partition=number % self._partitions
                    )
                )
                self.sent.append(value)
                number += 1
            try:
                for future in futures:
                    future.result(timeout=120)
            except Exception as error:
                self.failures.append(error)
                return

    def stop(self) -> list[str]:
        """Stop producing, close the producer and return the values sent."""
        self._stop.set()
        self._thread.join(timeout=120)
        self._producer.close()
        assert not self.failures, f"producing failed: {self.failures!r}"
        return list(self.sent)


def processed_counts(members: Iterable[MemberProcess]) -> Counter[tuple[int, int]]:
    """Count how often each (partition, offset) was processed across ``members``."""
    counts: Counter[tuple[int, int]] = Counter()
    for member in members:
        for event in member.of("record"):
            counts[(event["partition"], event["offset"])] += 1
    return counts


def _segments(member: MemberProcess) -> list[tuple[int, float, float, str]]:
    """Return (partition, start, end, member) processing intervals of one member process.

    A segment starts at the first record processed after the partition was
    assigned. It ends at the revoke (the member released the partition and
    its generation stayed valid until then), or else at the last record
    processed (a member that was killed, or fenced and lost the partition).
    """
    found: list[tuple[int, float, float, str]] = []
    open_segments: dict[int, list[float]] = {}
    for event in member.snapshot():
        kind = event["event"]
        partitions = [event["partition"]] if kind == "record" else event.get("partitions", [])
        if kind == "record":
            segment = open_segments.setdefault(event["partition"], [event["t"], event["t"]])
            segment[1] = event["t"]
        elif kind in ("revoked", "lost"):
            for partition in partitions:
                segment_or_none = open_segments.pop(partition, None)
                if segment_or_none is not None:
                    end = event["t"] if kind == "revoked" else segment_or_none[1]
                    found.append((partition, segment_or_none[0], end, member.name))
    for partition, (start, end) in open_segments.items():
        found.append((partition, start, end, member.name))
    return found


def overlapping_segments(
    members: Iterable[MemberProcess],
) -> list[tuple[tuple[int, float, float, str], tuple[int, float, float, str]]]:
    """Return pairs of processing intervals of one partition, by different members, that overlap."""
    by_partition: dict[int, list[tuple[int, float, float, str]]] = {}
    for member in members:
        for segment in _segments(member):
            by_partition.setdefault(segment[0], []).append(segment)
    overlaps = []
    for segments in by_partition.values():
        segments.sort(key=lambda segment: segment[1])
        for index, later in enumerate(segments):
            for earlier in segments[:index]:
                if earlier[3] != later[3] and later[1] <= earlier[2]:
                    overlaps.append((earlier, later))
    return overlaps


class CommittedWatcher:
    """A thread that reads a group's committed offsets from every running member every 100 ms.

    Each node applies the Raft log in order, so the offsets one node
    returns must never go backwards; :meth:`backwards` lists every time
    they did.
    """

    def __init__(self, cluster: ClusterProcess, group: str) -> None:
        self._cluster = cluster
        self._group = group
        self._stop = threading.Event()
        self.series: dict[str, list[dict[int, int]]] = {}
        self._thread = threading.Thread(target=self._run, name="committed-watcher", daemon=True)

    def start(self) -> CommittedWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for node in self._cluster.running():
                try:
                    body = node.get(f"/v1/groups/{self._group}/offsets", timeout=2)
                except (HttpError, OSError):
                    continue
                offsets = {int(e["partition"]): int(e["offset"]) for e in body["offsets"]}
                self.series.setdefault(node.url, []).append(offsets)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def backwards(self) -> list[tuple[str, int, int, int]]:
        """Return (node URL, partition, earlier offset, later offset) for each step back."""
        found = []
        for url, readings in self.series.items():
            latest: dict[int, int] = {}
            for reading in readings:
                for partition, offset in reading.items():
                    if offset < latest.get(partition, -1):
                        found.append((url, partition, latest[partition], offset))
                    latest[partition] = max(offset, latest.get(partition, -1))
        return found
