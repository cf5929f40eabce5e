from __future__ import annotations

import pytest

from tests.compose.docker_harness import build_image


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "compose: builds the Kaflow image and runs containers; "
        "runs only with KAFLOW_COMPOSE_TESTS=1",
    )


@pytest.fixture(scope="session")
def kaflow_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Kaflow image tag, built once per session by cluster/docker/build-image.sh."""
    return build_image(tmp_path_factory.mktemp("image") / "build-image.log")
