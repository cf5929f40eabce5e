"""`kaflow consume --group` as a consumer group member: two commands share a topic."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from typing import Any

from tests.cli.cli_runner import KAFLOW, clean_env
from tests.harness import HttpError, NodeProcess, wait_until


class JsonLines:
    """Collects a child's JSON stdout lines on a thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[dict[str, Any]] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            self.lines.append(json.loads(raw))


def start_member(node: NodeProcess, topic: str) -> subprocess.Popen[bytes]:
    command = [*KAFLOW, "--bootstrap", node.url, "consume", topic, "--group", "printers"]
    return subprocess.Popen(
        [*command, "--follow", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )


def member_sizes(node: NodeProcess) -> list[int]:
    try:
        described = node.get("/v1/groups/printers")
    except HttpError as error:
        if error.code == "unknown_group":
            return []
        raise
    return sorted(
        sum(len(entry["partitions"]) for entry in member["assignment"])
        for member in described["members"]
    )


def test_consume_group_members_share_partitions(node: NodeProcess) -> None:
    node.create_topic("shared", partitions=4)
    processes = [start_member(node, "shared") for _ in range(2)]
    try:
        outputs = [JsonLines(process) for process in processes]
        wait_until(lambda: member_sizes(node) == [2, 2], 60, "two members with two partitions")
        records = [{"value": f"v{i}", "partition": i % 4} for i in range(40)]
        node.post("/v1/topics/shared/records", {"records": records})
        wait_until(
            lambda: sum(len(output.lines) for output in outputs) >= 40, 60, "40 records printed"
        )
        for process in processes:
            process.send_signal(signal.SIGTERM)
        statuses = [process.wait(timeout=30) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)

    assert statuses == [0, 0]
    # SIGTERM ends the member cleanly: no traceback of an abandoned poll on stderr.
    for process in processes:
        assert process.stderr is not None
        errors = process.stderr.read().decode()
        assert "Traceback" not in errors, errors
        assert "Task was destroyed" not in errors, errors
    printed = [(line["partition"], line["offset"]) for output in outputs for line in output.lines]
    assert sorted(printed) == sorted((i % 4, i // 4) for i in range(40))
    by_member = [{line["partition"] for line in output.lines} for output in outputs]
    assert by_member[0].isdisjoint(by_member[1])
    assert node.get("/v1/groups/printers")["members"] == []
    offsets = node.get("/v1/groups/printers/offsets")["offsets"]
    assert sorted((o["partition"], o["offset"]) for o in offsets) == [(p, 10) for p in range(4)]
