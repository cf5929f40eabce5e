"""A chaos cluster of Kaflow containers from docker-compose.cluster.yml (``--runner container``).

The cluster is one docker-compose project made from ``docker-compose.cluster.yml``
and the test override ``cluster/docker/compose.test.yml``, whose containers
stay down when killed and keep DNS lookups on the machine. It is started with
``docker-compose up -d --no-build`` on an image that already exists. By
default that is ``kaflow:compose-test``, the tag the compose tests build, so
a run after ``make compose-test`` builds nothing. Set ``KAFLOW_CHAOS_IMAGE``
to use another tag.

Faults act through the Docker Engine API (the ``docker`` Python SDK):

- kill sends a signal to the container's main process (docker-init, which
  forwards it to ``kaflow serve``); terminate is ``docker stop``;
- pause and resume freeze and thaw the container's cgroup;
- isolating a node disconnects its container from the compose network, and
  heal connects it again with its service name as DNS alias. A one-way cut
  has no Docker equivalent and raises ChaosUnsupportedError.

Each node's HTTP port is published on 127.0.0.1 at a port picked free before
``up``, so a restarted container keeps its URL, and each node advertises
that URL (a third compose file in the run's output directory). Raft traffic
stays on the compose network. Data lives in the project's named volumes, and
``ChaosNode.data_dir`` is a volume's mount point on this machine. The project
and its volumes are removed at stop; the container logs are copied to
``<out_dir>/logs/<node>.log`` at every kill, stop and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from chaos.api import (
    ChaosCluster,
    ChaosNode,
    ChaosSetupError,
    ChaosUnsupportedError,
    DataDirProvider,
    NetworkController,
    PlainDataDirs,
)
from chaos.http import NodeHttpError, request_json, wait_for

__all__ = [
    "COMPOSE_FILES",
    "DEFAULT_IMAGE",
    "ContainerCluster",
    "ContainerNetwork",
    "ContainerNode",
    "create_cluster",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = (
    REPO_ROOT / "docker-compose.cluster.yml",
    REPO_ROOT / "cluster" / "docker" / "compose.test.yml",
)
# The tag tests/compose builds, so the chaos run reuses that image.
DEFAULT_IMAGE = "kaflow:compose-test"
IMAGE_VARIABLE = "KAFLOW_CHAOS_IMAGE"
SERVICES = ("n1", "n2", "n3")
CONTAINER_RAFT_PORT = 8093
NETWORK_NAME = "kaflow"
STATUS_TIMEOUT_S = 2.0
COMPOSE_TIMEOUT_S = 180.0
# docker stop waits this long for kaflow serve to exit on SIGTERM, then kills it.
DEFAULT_STOP_TIMEOUT_S = 15.0

# Runs ``docker-compose`` with the given arguments and extra environment; returns stdout.
ComposeRunner = Callable[[Sequence[str], Mapping[str, str]], Awaitable[str]]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_compose(args: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``docker-compose`` and return its stdout; raise ChaosSetupError on failure."""
    full_env = {**os.environ, **env}
    try:
        process = await asyncio.create_subprocess_exec(
            "docker-compose",
            "--ansi",
            "never",
            *args,
            env=full_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise ChaosSetupError(
            "docker-compose is not installed; cluster/docker/build-image.sh installs it "
            "(make compose-test runs that script)"
        ) from exc
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), COMPOSE_TIMEOUT_S)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise ChaosSetupError(
            f"docker-compose {' '.join(args)} did not finish within {COMPOSE_TIMEOUT_S:g} s"
        ) from exc
    if process.returncode != 0:
        raise ChaosSetupError(
            f"docker-compose {' '.join(args)} exited with {process.returncode}: "
            f"{stderr.decode(errors='replace')[-2000:]}",
            returncode=process.returncode,
        )
    return stdout.decode(errors="replace")


def _docker_sdk() -> Any:
    """Return the ``docker`` module; the package is optional (the ``chaos`` extra)."""
    try:
        return importlib.import_module("docker")
    except ModuleNotFoundError as exc:
        raise ChaosSetupError(
            "the container runner needs the docker package: pip install -e '.[chaos]'"
        ) from exc


def _docker_client() -> Any:
    """Return a docker SDK client for the engine that ``DOCKER_HOST`` names (or the default)."""
    docker = _docker_sdk()
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ChaosSetupError(
            f"no Docker engine responds ({exc}); start one, e.g. with "
            "cluster/docker/build-image.sh, which the compose tests run"
        ) from exc
    return client


class ContainerNode(ChaosNode):
    """One compose service's container, driven through the docker SDK."""

    def __init__(self, cluster: ContainerCluster, service: str, http_port: int) -> None:
        self._cluster = cluster
        self.name = service
        self.host = "127.0.0.1"
        self.http_port = http_port
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.raft_address = f"{service}:{CONTAINER_RAFT_PORT}"
        self.data_dir = cluster.out_dir / "data" / service
        self.log_path = cluster.out_dir / "logs" / f"{service}.log"
        self.container: Any = None

    def _state(self) -> dict[str, Any]:
        if self.container is None:
            return {}
        with contextlib.suppress(Exception):
            self.container.reload()
        state: dict[str, Any] = self.container.attrs.get("State", {})
        return state

    @property
    def running(self) -> bool:
        return bool(self._state().get("Running"))

    @property
    def paused(self) -> bool:
        return bool(self._state().get("Paused"))

    @property
    def pid(self) -> int | None:
        state = self._state()
        pid = state.get("Pid")
        return pid if state.get("Running") and isinstance(pid, int) and pid > 0 else None

    async def start(self) -> None:
        if self.running:
            return
        await asyncio.to_thread(self.container.start)
        logger.info("container started node=%s url=%s", self.name, self.http_url)

    async def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if not self.running:
            return
        await asyncio.to_thread(self.container.kill, signal=sig.name)
        if sig == signal.SIGKILL:
            await wait_for(self._stopped, 10.0, interval_s=0.1)
            await self.save_log()
        logger.info("container signalled node=%s signal=%s", self.name, sig.name)

    async def terminate(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        if not self.running:
            return
        if self.paused:
            await self.resume()
        await asyncio.to_thread(self.container.stop, timeout=max(1, round(timeout_s)))
        await self.save_log()
        logger.info("container stopped node=%s", self.name)

    async def pause(self) -> None:
        await asyncio.to_thread(self.container.pause)
        logger.info("container paused node=%s", self.name)

    async def resume(self) -> None:
        if self.paused:
            await asyncio.to_thread(self.container.unpause)
        logger.info("container resumed node=%s", self.name)

    async def _stopped(self) -> bool:
        return not self.running

    async def save_log(self) -> None:
        """Copy the container's whole output (every run of it) to ``log_path``."""
        if self.container is None:
            return
        try:
            output: bytes = await asyncio.to_thread(self.container.logs)
        except Exception as exc:  # the SDK raises requests and docker errors alike
            logger.warning("failed to read container logs node=%s error=%s", self.name, exc)
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(output)


class ContainerNetwork(NetworkController):
    """Isolates containers by disconnecting them from the compose network."""

    def __init__(self, cluster: ContainerCluster) -> None:
        self._cluster = cluster
        self._disconnected: dict[str, ContainerNode] = {}

    async def cut(self, source: ChaosNode, target: ChaosNode) -> None:
        raise ChaosUnsupportedError(
            f"the container runner cannot drop only the traffic from {source.name} to "
            f"{target.name}: Docker disconnects a container in both directions; use a "
            "scenario that isolates whole nodes, or --runner process",
            source=source.name,
            target=target.name,
        )

    async def isolate(self, node: ChaosNode, peers: Sequence[ChaosNode]) -> None:
        if not isinstance(node, ContainerNode):
            raise ChaosUnsupportedError(f"node {node.name} is not a container node")
        network = await self._cluster.network_object()
        await asyncio.to_thread(network.disconnect, node.container, force=True)
        self._disconnected[node.name] = node
        logger.info("container disconnected node=%s network=%s", node.name, network.name)

    async def heal(self) -> None:
        network = await self._cluster.network_object()
        for name, node in list(self._disconnected.items()):
            await asyncio.to_thread(network.connect, node.container, aliases=[node.name])
            del self._disconnected[name]
            logger.info("container reconnected node=%s network=%s", node.name, network.name)

    async def reset(self) -> None:
        """Connect every container of the project that is not on the compose network."""
        self._disconnected.clear()
        if not self._cluster.started:
            return
        network = await self._cluster.network_object()
        for node in self._cluster.container_nodes():
            attached = node.container.attrs.get("NetworkSettings", {}).get("Networks", {})
            if network.name not in attached:
                await asyncio.to_thread(network.connect, node.container, aliases=[node.name])


class ContainerCluster(ChaosCluster):
    """The three services of docker-compose.cluster.yml as one chaos cluster."""

    def __init__(
        self,
        out_dir: Path,
        image: str = DEFAULT_IMAGE,
        *,
        client_factory: Callable[[], Any] = _docker_client,
        compose: ComposeRunner = run_compose,
    ) -> None:
        self.out_dir = out_dir
        self.image = image
        self.project = f"kaflowchaos{secrets.token_hex(5)}"
        self.secret = secrets.token_hex(32)
        self.started = False
        self._client_factory = client_factory
        self._compose = compose
        self._client: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._network = ContainerNetwork(self)
        self.nodes: list[ChaosNode] = [
            ContainerNode(self, service, _free_port()) for service in SERVICES
        ]

    @property
    def network(self) -> NetworkController:
        return self._network

    def container_nodes(self) -> list[ContainerNode]:
        return [node for node in self.nodes if isinstance(node, ContainerNode)]

    def _environment(self) -> dict[str, str]:
        env = {"KAFLOW_IMAGE": self.image, "KAFLOW_CLUSTER_SECRET": self.secret}
        for node in self.container_nodes():
            env[f"KAFLOW_{node.name.upper()}_HTTP_PORT"] = str(node.http_port)
        return env

    @property
    def override_file(self) -> Path:
        """The run's own compose override: each node's advertised URL."""
        return self.out_dir / "compose.chaos.yml"

    def _write_override(self) -> None:
        # The image advertises http://0.0.0.0:8092, which clients on this machine
        # cannot reach, and the Kaflow client replaces its bootstrap URLs with the
        # advertised ones. So each node advertises its published 127.0.0.1 URL.
        # NOTE: inside the containers that URL does not reach the peer, so a node
        # that must copy records from a peer (catch-up after a snapshot install)
        # finds none. A 30 s container run stays, by estimate, far below the
        # 10000 Raft entries that start a compaction, so no snapshot is installed.
        services = {
            node.name: {"environment": {"KAFLOW_ADVERTISED_URL": node.http_url}}
            for node in self.container_nodes()
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML, so no YAML writer is needed.
        self.override_file.write_text(json.dumps({"version": "3.8", "services": services}))

    def _compose_args(self, *args: str) -> list[str]:
        command = ["-p", self.project]
        for path in (*COMPOSE_FILES, self.override_file):
            command += ["-f", str(path)]
        return [*command, *args]

    async def start(self) -> None:
        self._client = await asyncio.to_thread(self._client_factory)
        await self._check_image()
        self._write_override()
        await self._compose(self._compose_args("up", "-d", "--no-build"), self._environment())
        self.started = True
        for node in self.container_nodes():
            node.container = await asyncio.to_thread(self._find_container, node.name)
            node.data_dir = await asyncio.to_thread(self._volume_path, node.name)
        await self.wait_ready(90.0)

    async def _check_image(self) -> None:
        try:
            await asyncio.to_thread(self._client.images.get, self.image)
        except _docker_sdk().errors.ImageNotFound as exc:
            raise ChaosSetupError(
                f"image {self.image} does not exist; build it with "
                f"KAFLOW_IMAGE={self.image} cluster/docker/build-image.sh (make compose-test "
                f"builds {DEFAULT_IMAGE}), or set {IMAGE_VARIABLE} to an existing tag",
                image=self.image,
            ) from exc

    def _find_container(self, service: str) -> Any:
        labels = [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}",
        ]
        found = self._client.containers.list(all=True, filters={"label": labels})
        if len(found) != 1:
            raise ChaosSetupError(
                f"expected one container of service {service} in compose project "
                f"{self.project}, found {len(found)}",
                service=service,
            )
        return found[0]

    def _volume_path(self, service: str) -> Path:
        volume = self._client.volumes.get(f"{self.project}_{service}-data")
        return Path(volume.attrs["Mountpoint"])

    async def network_object(self) -> Any:
        """Return the SDK object of the project's compose network."""
        return await asyncio.to_thread(self._client.networks.get, f"{self.project}_{NETWORK_NAME}")

    async def stop(self) -> None:
        try:
            if self.started:
                with contextlib.suppress(ChaosSetupError):
                    await self._network.heal()
                for node in self.container_nodes():
                    if node.paused:
                        await node.resume()
                    await node.save_log()
        finally:
            if self.started:
                args = self._compose_args("down", "--volumes", "--remove-orphans", "--timeout", "5")
                await self._compose(args, self._environment())
                self.started = False
            if self._session is not None:
                await self._session.close()
            if self._client is not None:
                await asyncio.to_thread(self._client.close)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def status(self, node: ChaosNode) -> dict[str, Any] | None:
        """Return ``GET /v1/cluster`` of ``node``, or None when it does not respond."""
        if not node.running or node.paused:
            return None
        try:
            body = await request_json(
                self.session(), "GET", node.http_url + "/v1/cluster", timeout_s=STATUS_TIMEOUT_S
            )
        except NodeHttpError:
            return None
        return body if isinstance(body, dict) else None

    async def leader(self) -> ChaosNode | None:
        statuses = await asyncio.gather(*(self.status(node) for node in self.nodes))
        votes: dict[str, int] = {}
        for status in statuses:
            if status is not None and status.get("leader_id") is not None:
                votes[status["leader_id"]] = votes.get(status["leader_id"], 0) + 1
        majority = len(self.nodes) // 2 + 1
        for node, status in zip(self.nodes, statuses, strict=True):
            if status is None or status.get("role") != "leader":
                continue
            if votes.get(node.name, 0) >= majority:
                return node
        return None

    async def wait_ready(self, timeout_s: float) -> ChaosNode:
        found: list[ChaosNode] = []

        async def ready() -> bool:
            leader = await self.leader()
            if leader is None:
                return False
            for node in self.nodes:
                if not node.running or node.paused:
                    continue
                status = await self.status(node)
                if status is None or not status.get("ready"):
                    return False
                if status.get("leader_id") != leader.name:
                    return False
            found[:] = [leader]
            return True

        started = time.monotonic()
        if not await wait_for(ready, timeout_s, interval_s=0.25):
            raise ChaosSetupError(
                f"the container cluster had no leader that every running node follows after "
                f"{time.monotonic() - started:.0f} s; see the logs in {self.out_dir / 'logs'}",
                project=self.project,
            )
        return found[0]

    async def add_node(self) -> ChaosNode:
        raise ChaosUnsupportedError(
            "docker-compose.cluster.yml defines exactly three nodes, so the container runner "
            "cannot add one; run membership scenarios with --runner process"
        )

    async def remove_node(self, node: ChaosNode) -> None:
        raise ChaosUnsupportedError(
            f"the container runner cannot remove node {node.name}: docker-compose.cluster.yml "
            "defines exactly three nodes; run membership scenarios with --runner process"
        )


def create_cluster(
    out_dir: Path, data_dirs: DataDirProvider, kaflow_source: Path | None
) -> ContainerCluster:
    """Return the compose cluster; the runner's factory for ``--runner container``.

    Raises ChaosUnsupportedError for a scenario with its own data directories
    (the containers keep data in named volumes) or a ``kaflow_source`` (the
    image contains the installed package).
    """
    if kaflow_source is not None:
        raise ChaosUnsupportedError(
            f"the container runner runs the kaflow package inside the image, not "
            f"{kaflow_source}; rebuild the image from that tree or use --runner process",
            kaflow_source=str(kaflow_source),
        )
    if not isinstance(data_dirs, PlainDataDirs):
        raise ChaosUnsupportedError(
            f"the container runner keeps data in Docker volumes and cannot use "
            f"{type(data_dirs).__name__}; run this scenario with --runner process",
            data_dirs=type(data_dirs).__name__,
        )
    return ContainerCluster(out_dir, os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE)
