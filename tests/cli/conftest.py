from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import NodeProcess


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One `kaflow serve` process for every test of a module; tests use distinct topic names."""
    data_dir: Path = tmp_path_factory.mktemp("cli") / "node-1"
    node = NodeProcess(data_dir)
    try:
        node.start()
        yield node
    finally:
        node.kill()
