from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import ClusterProcess


@pytest.fixture
def group_cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    """A started 3-member cluster whose members know each other's HTTP addresses."""
    cluster = ClusterProcess(tmp_path / "cluster", 3)
    try:
        cluster.start()
        cluster.wait_registered()
        yield cluster
    finally:
        cluster.close()
