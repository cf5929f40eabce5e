from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import NodeProcess


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[type[NodeProcess]]:
    """Build NodeProcess objects whose processes are killed when the test ends."""
    started: list[NodeProcess] = []

    class TrackedNode(NodeProcess):
        def start(self, timeout: float = 60.0) -> NodeProcess:
            started.append(self)
            return super().start(timeout)

    yield TrackedNode
    for node in started:
        node.kill()


@pytest.fixture
def node(node_factory: type[NodeProcess], tmp_path: Path) -> NodeProcess:
    """A started single-node Kaflow process with data in tmp_path."""
    return node_factory(tmp_path / "node-1").start()
