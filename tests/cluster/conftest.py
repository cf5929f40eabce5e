from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import ClusterProcess


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., ClusterProcess]]:
    """Build ClusterProcess objects whose members are killed when the test ends."""
    built: list[ClusterProcess] = []

    def build(size: int = 3, extra_args: tuple[str, ...] = ()) -> ClusterProcess:
        cluster = ClusterProcess(tmp_path / f"cluster-{len(built)}", size, extra_args)
        built.append(cluster)
        return cluster

    yield build
    for cluster in built:
        cluster.close()


@pytest.fixture
def cluster(cluster_factory: Callable[..., ClusterProcess]) -> ClusterProcess:
    """A started 3-member cluster whose members know each other's HTTP addresses."""
    started = cluster_factory().start()
    started.wait_registered()
    return started
