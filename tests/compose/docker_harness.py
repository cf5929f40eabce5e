"""Build the Kaflow image and drive docker and docker-compose for the container tests.

The tests reach nodes only through ports that Docker publishes on 127.0.0.1;
node-to-node traffic stays on the networks the tests create.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import HttpError, http_json

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "cluster" / "docker" / "build-image.sh"
CLUSTER_COMPOSE_FILE = REPO_ROOT / "docker-compose.cluster.yml"
TEST_COMPOSE_FILE = REPO_ROOT / "cluster" / "docker" / "compose.test.yml"
# A tag of its own, so the tests never replace an image a developer built as kaflow:latest.
TEST_IMAGE = "kaflow:compose-test"
CONTAINER_HTTP_PORT = 8092
ENABLE_VARIABLE = "KAFLOW_COMPOSE_TESTS"
# A cold build installs Docker, debootstraps the base image and downloads wheels:
# about 250 s on a 2-core VM (docs/docker.md).
BUILD_TIMEOUT_S = 900.0
# Per-test limit for pytest-timeout; it includes the image build in the first test.
TEST_TIMEOUT_S = 1200

requires_compose_tests = pytest.mark.skipif(
    os.environ.get(ENABLE_VARIABLE) != "1",
    reason=(
        f"container tests are off: set {ENABLE_VARIABLE}=1 to build the Kaflow image and run "
        "them (needs root, or a running Docker engine, docker-compose and the base image)"
    ),
)


class CommandFailed(AssertionError):
    """A docker or docker-compose command exited with a non-zero status."""


def run_command(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; raise CommandFailed on a non-zero exit if check."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        list(args),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandFailed(
            f"{' '.join(args)} exited with {result.returncode}\n"
            f"stdout:\n{_tail(result.stdout)}\nstderr:\n{_tail(result.stderr)}"
        )
    return result


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def build_image(log_path: Path) -> str:
    """Build TEST_IMAGE with cluster/docker/build-image.sh; return its tag.

    The script's output goes to ``log_path``; on failure its last lines are in
    the assertion message.
    """
    env = dict(os.environ)
    env.update({"KAFLOW_IMAGE": TEST_IMAGE, "PYTHON": sys.executable})
    with log_path.open("w") as log:
        result = subprocess.run(
            [str(BUILD_SCRIPT)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        raise CommandFailed(
            f"{BUILD_SCRIPT} exited with {result.returncode}; last lines of {log_path}:\n"
            f"{_tail(log_path.read_text())}"
        )
    return TEST_IMAGE


def wait_for(predicate: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    """Poll ``predicate`` every 0.2 s; on timeout fail with what ``describe`` returns then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s: {describe()}")


def container_health(container: str) -> str:
    """Return Docker's health status of a container: starting, healthy or unhealthy."""
    return run_command(
        ["docker", "inspect", "-f", "{{.State.Health.Status}}", container]
    ).stdout.strip()


def container_state(container: str) -> dict[str, Any]:
    """Return ``docker inspect``'s State object of a container."""
    output = run_command(["docker", "inspect", "-f", "{{json .State}}", container]).stdout
    state: dict[str, Any] = json.loads(output)
    return state


def wait_healthy(containers: Iterable[str], timeout: float) -> None:
    """Wait until Docker reports every container healthy, which runs the image's HEALTHCHECK."""
    pending = list(containers)

    def all_healthy() -> bool:
        pending[:] = [name for name in pending if container_health(name) != "healthy"]
        return not pending

    def describe() -> str:
        return "; ".join(
            f"{name} is {container_health(name)}, last checks: {_health_log(name)}"
            for name in pending
        )

    wait_for(all_healthy, timeout, describe)


def _health_log(container: str) -> str:
    output = run_command(["docker", "inspect", "-f", "{{json .State.Health}}", container]).stdout
    health = json.loads(output) or {}
    return " | ".join(entry.get("Output", "").strip() for entry in health.get("Log", [])[-2:])


def loopback_url(address: str) -> str:
    """Return the base URL for a published address such as ``127.0.0.1:32768``."""
    host, _, port = address.strip().splitlines()[0].rpartition(":")
    assert host == "127.0.0.1", f"port published on {host!r}, expected 127.0.0.1 only"
    return f"http://{host}:{port}"


def get_json_or_none(url: str, timeout: float = 3.0) -> Any:
    """GET a JSON document; return None when the node is unreachable or returns an error."""
    try:
        return http_json("GET", url, timeout=timeout)[1]
    except (HttpError, urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Compose:
    """One docker-compose project made from ``files``, run with extra environment ``env``."""

    project: str
    files: tuple[Path, ...]
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "--ansi", "never", "-p", self.project]
        for path in self.files:
            command += ["-f", str(path)]
        return run_command([*command, *args], env=self.env, timeout=timeout)

    def up(self) -> None:
        """Create and start every service from the existing image, without building."""
        self.run("up", "-d", "--no-build")

    def down(self) -> None:
        """Remove the containers, the network and the named volumes."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "2")

    def container(self, service: str) -> str:
        container_id = self.run("ps", "-q", service).stdout.strip()
        assert container_id, f"service {service} has no container in project {self.project}"
        return container_id

    def published_url(self, service: str) -> str:
        """Return the 127.0.0.1 URL of a service's HTTP port."""
        return loopback_url(self.run("port", service, str(CONTAINER_HTTP_PORT)).stdout)

    def kill(self, service: str) -> None:
        """Send SIGKILL to a service's container: a crash, with no clean shutdown."""
        self.run("kill", "-s", "SIGKILL", service)

    def logs(self, lines: int = 200) -> str:
        """Return the last lines of every service's log, without access log lines."""
        output = self.run("logs", "--no-color", f"--tail={lines}").stdout
        return "\n".join(line for line in output.splitlines() if "kaflow.access" not in line)
