"""cluster/Dockerfile: one container serves as user kaflow, stops cleanly and keeps its data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.compose.docker_harness import (
    CONTAINER_HTTP_PORT,
    TEST_TIMEOUT_S,
    container_state,
    get_json_or_none,
    loopback_url,
    requires_compose_tests,
    run_command,
    wait_for,
    wait_healthy,
)
from tests.harness import http_json

pytestmark = [pytest.mark.compose, requires_compose_tests, pytest.mark.timeout(TEST_TIMEOUT_S)]

KAFLOW_UID = "10001"
START_TIMEOUT_S = 60.0
TOPIC = "events"


@pytest.fixture
def container_name() -> Iterator[str]:
    """A unique container name; the container and its volume are removed afterwards."""
    name = f"kaflowtest-single-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        logs = run_command(["docker", "logs", "--tail", "100", name], check=False)
        print(logs.stdout, logs.stderr)
        run_command(["docker", "rm", "--force", "--volumes", name], check=False)
        run_command(["docker", "volume", "rm", "--force", f"{name}-data"], check=False)


def published_url(container: str) -> str:
    output = run_command(["docker", "port", container, f"{CONTAINER_HTTP_PORT}/tcp"]).stdout
    return loopback_url(output)


def read_values(url: str, count: int) -> list[str]:
    """Fetch partition 0 of TOPIC from offset 0; return its values once there are ``count``."""
    values: list[str] = []

    def complete() -> bool:
        body = get_json_or_none(f"{url}/v1/topics/{TOPIC}/partitions/0/records?offset=0")
        if isinstance(body, dict):
            values[:] = [record["value"] for record in body["records"]]
        return len(values) >= count

    wait_for(complete, START_TIMEOUT_S, lambda: f"{url}: {len(values)} of {count} records")
    return values


def test_image_serves_and_keeps_data(kaflow_image: str, container_name: str) -> None:
    run_command(
        [
            "docker", "run", "--detach", "--name", container_name, "--init",
            "--dns", "127.0.0.1", "--health-interval", "1s",
            "--publish", f"127.0.0.1::{CONTAINER_HTTP_PORT}",
            "--volume", f"{container_name}-data:/var/lib/kaflow",
            kaflow_image,
        ]
    )  # fmt: skip
    wait_healthy([container_name], START_TIMEOUT_S)
    url = published_url(container_name)

    # docker top runs ps on the host and needs the pid column.
    processes = run_command(["docker", "top", container_name, "-o", "pid,uid,args"]).stdout
    serve_lines = [line for line in processes.splitlines() if "kaflow serve" in line]
    assert serve_lines, processes
    assert all(line.split()[1] == KAFLOW_UID for line in serve_lines), processes

    http_json("POST", f"{url}/v1/topics", {"name": TOPIC, "partitions": 1})
    values = [f"event-{i}" for i in range(20)]
    records = [{"value": value} for value in values]
    http_json("POST", f"{url}/v1/topics/{TOPIC}/records", {"records": records})
    assert read_values(url, len(values)) == values

    # SIGTERM through docker-init: kaflow serve stops cleanly and exits 0.
    run_command(["docker", "stop", "--time", "20", container_name])
    state = container_state(container_name)
    assert state["Running"] is False
    assert state["ExitCode"] == 0
    assert state["OOMKilled"] is False

    run_command(["docker", "start", container_name])
    wait_healthy([container_name], START_TIMEOUT_S)
    # Docker may publish a different host port after a restart.
    restarted_url = published_url(container_name)
    assert read_values(restarted_url, len(values)) == values
