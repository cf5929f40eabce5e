"""ContainerCluster over a stand-in for the Docker engine.

The container runner needs a Docker engine and the Kaflow image, which only
the compose tests provide (tests/compose). Here the docker SDK client is a
small fake that records calls, docker-compose is a recorded coroutine, and
each node's ``GET /v1/cluster`` is served by a real aiohttp server on the
127.0.0.1 port the cluster published for that node.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chaos.api import ChaosSetupError, ChaosUnsupportedError, DataDirProvider, PlainDataDirs
from chaos.container_cluster import ContainerCluster, ContainerNode, create_cluster

docker = pytest.importorskip("docker", reason="the docker package comes with the chaos extra")


class FakeContainer:
    def __init__(self, service: str, network: str) -> None:
        self.service = service
        self.calls: list[tuple[str, Any]] = []
        self.attrs: dict[str, Any] = {
            "State": {"Running": True, "Paused": False, "Pid": 100},
            "NetworkSettings": {"Networks": {network: {}}},
        }

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.attrs["State"]
        return state

    def reload(self) -> None:
        return None

    def start(self) -> None:
        self.calls.append(("start", None))
        self.state.update(Running=True, Pid=101)

    def kill(self, signal: str) -> None:
        self.calls.append(("kill", signal))
        if signal == "SIGKILL":
            self.state.update(Running=False, Pid=0)

    def stop(self, timeout: int) -> None:
        self.calls.append(("stop", timeout))
        self.state.update(Running=False, Pid=0)

    def pause(self) -> None:
        self.calls.append(("pause", None))
        self.state["Paused"] = True

    def unpause(self) -> None:
        self.calls.append(("unpause", None))
        self.state["Paused"] = False

    def logs(self) -> bytes:
        return f"log of {self.service}\n".encode()


class FakeNetwork:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, str, Any]] = []

    def disconnect(self, container: FakeContainer, force: bool) -> None:
        self.calls.append(("disconnect", container.service, force))
        del container.attrs["NetworkSettings"]["Networks"][self.name]

    def connect(self, container: FakeContainer, aliases: list[str]) -> None:
        self.calls.append(("connect", container.service, aliases))
        container.attrs["NetworkSettings"]["Networks"][self.name] = {}


class FakeCollection:
    def __init__(self, client: FakeClient) -> None:
        self.client = client


class FakeContainers(FakeCollection):
    def list(self, all: bool, filters: Mapping[str, list[str]]) -> list[FakeContainer]:
        labels = dict(label.split("=", 1) for label in filters["label"])
        assert labels["com.docker.compose.project"] == self.client.project
        return [self.client.containers_by_service[labels["com.docker.compose.service"]]]


class FakeVolume:
    def __init__(self, mountpoint: str) -> None:
        self.attrs = {"Mountpoint": mountpoint}


class FakeVolumes(FakeCollection):
    def get(self, name: str) -> FakeVolume:
        return FakeVolume(f"/var/lib/docker/volumes/{name}/_data")


class FakeImages(FakeCollection):
    def get(self, tag: str) -> object:
        if tag not in self.client.image_tags:
            raise docker.errors.ImageNotFound(f"No such image: {tag}")
        return object()


class FakeNetworks(FakeCollection):
    def get(self, name: str) -> FakeNetwork:
        assert name == self.client.network.name
        return self.client.network


class FakeClient:
    def __init__(self, project: str, image_tags: set[str]) -> None:
        self.project = project
        self.image_tags = image_tags
        self.network = FakeNetwork(f"{project}_kaflow")
        self.containers_by_service = {
            service: FakeContainer(service, self.network.name) for service in ("n1", "n2", "n3")
        }
        self.containers = FakeContainers(self)
        self.volumes = FakeVolumes(self)
        self.images = FakeImages(self)
        self.networks = FakeNetworks(self)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ComposeRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    async def __call__(self, args: Sequence[str], env: Mapping[str, str]) -> str:
        self.calls.append((list(args), dict(env)))
        return ""


async def serve_status(port: int, node_id: str, leader: str) -> web.AppRunner:
    async def cluster_status(request: web.Request) -> web.Response:
        role = "leader" if node_id == leader else "follower"
        return web.json_response({"leader_id": leader, "role": role, "ready": True})

    app = web.Application()
    app.router.add_get("/v1/cluster", cluster_status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def build_cluster(
    tmp_path: Path, image_tags: set[str]
) -> tuple[ContainerCluster, ComposeRecorder, list[FakeClient]]:
    compose = ComposeRecorder()
    clients: list[FakeClient] = []

    def client_factory() -> FakeClient:
        client = FakeClient(cluster.project, image_tags)
        clients.append(client)
        return client

    cluster = ContainerCluster(
        tmp_path, "kaflow:test", client_factory=client_factory, compose=compose
    )
    return cluster, compose, clients


@pytest.fixture
async def started(
    tmp_path: Path,
) -> AsyncIterator[tuple[ContainerCluster, ComposeRecorder, FakeClient]]:
    cluster, compose, clients = build_cluster(tmp_path, {"kaflow:test"})
    servers = [
        await serve_status(node.http_port, node.name, "n2")
        for node in cluster.nodes
        if isinstance(node, ContainerNode)
    ]
    await cluster.start()
    try:
        yield cluster, compose, clients[0]
    finally:
        await cluster.stop()
        for server in servers:
            await server.cleanup()


async def test_start_runs_compose_with_published_ports(
    started: tuple[ContainerCluster, ComposeRecorder, FakeClient],
) -> None:
    cluster, compose, _ = started
    args, env = compose.calls[0]

    assert args[-3:] == ["up", "-d", "--no-build"]
    assert args[:2] == ["-p", cluster.project]
    assert env["KAFLOW_IMAGE"] == "kaflow:test"
    assert len(env["KAFLOW_CLUSTER_SECRET"]) == 64
    assert args[args.index(str(cluster.override_file)) - 1] == "-f"
    override = json.loads(cluster.override_file.read_text())
    for node in cluster.nodes:
        assert isinstance(node, ContainerNode)
        assert env[f"KAFLOW_{node.name.upper()}_HTTP_PORT"] == str(node.http_port)
        advertised = override["services"][node.name]["environment"]["KAFLOW_ADVERTISED_URL"]
        assert advertised == f"http://127.0.0.1:{node.http_port}"
        assert node.data_dir == Path(
            f"/var/lib/docker/volumes/{cluster.project}_{node.name}-data/_data"
        )


async def test_leader_is_majority_choice(
    started: tuple[ContainerCluster, ComposeRecorder, FakeClient],
) -> None:
    cluster, _, _ = started

    leader = await cluster.leader()

    assert leader is not None
    assert leader.name == "n2"


async def test_node_faults_call_engine(
    started: tuple[ContainerCluster, ComposeRecorder, FakeClient],
) -> None:
    cluster, _, client = started
    node = cluster.nodes[0]
    container = client.containers_by_service[node.name]

    await node.pause()
    assert node.paused
    await node.resume()
    await node.kill(signal.SIGKILL)
    assert not node.running
    assert node.pid is None
    await node.start()
    assert node.pid == 101
    await node.terminate(timeout_s=3.0)

    assert container.calls == [
        ("pause", None),
        ("unpause", None),
        ("kill", "SIGKILL"),
        ("start", None),
        ("stop", 3),
    ]
    assert node.log_path.read_text() == "log of n1\n"


async def test_isolate_and_heal_reconnect_alias(
    started: tuple[ContainerCluster, ComposeRecorder, FakeClient],
) -> None:
    cluster, _, client = started
    node = cluster.nodes[2]

    await cluster.network.isolate(node, cluster.nodes)
    await cluster.network.heal()
    await cluster.network.heal()

    assert client.network.calls == [
        ("disconnect", "n3", True),
        ("connect", "n3", ["n3"]),
    ]


async def test_one_way_cut_unsupported(
    started: tuple[ContainerCluster, ComposeRecorder, FakeClient],
) -> None:
    cluster, _, _ = started

    with pytest.raises(ChaosUnsupportedError, match="both directions"):
        await cluster.network.cut(cluster.nodes[0], cluster.nodes[1])


async def test_stop_runs_compose_down(tmp_path: Path) -> None:
    cluster, compose, clients = build_cluster(tmp_path, {"kaflow:test"})
    servers = [
        await serve_status(node.http_port, node.name, "n1")
        for node in cluster.nodes
        if isinstance(node, ContainerNode)
    ]
    try:
        await cluster.start()
        await cluster.stop()
    finally:
        for server in servers:
            await server.cleanup()

    args, _ = compose.calls[-1]
    assert args[:2] == ["-p", cluster.project]
    assert args[-5:] == ["down", "--volumes", "--remove-orphans", "--timeout", "5"]
    assert clients[0].closed
    assert (tmp_path / "logs" / "n3.log").read_text() == "log of n3\n"


async def test_missing_image_names_build_command(tmp_path: Path) -> None:
    cluster, compose, _ = build_cluster(tmp_path, set())

    with pytest.raises(ChaosSetupError, match="KAFLOW_IMAGE=kaflow:test cluster/docker/build"):
        await cluster.start()
    assert compose.calls == []


def test_create_cluster_rejects_kaflow_source(tmp_path: Path) -> None:
    with pytest.raises(ChaosUnsupportedError, match="inside the image"):
        create_cluster(tmp_path, PlainDataDirs(tmp_path), tmp_path / "broken")


def test_create_cluster_rejects_other_data_dirs(tmp_path: Path) -> None:
    class MountedDirs(DataDirProvider):
        def prepare(self, node_name: str) -> Path:
            return tmp_path / node_name

        def cleanup(self) -> None:
            return None

    with pytest.raises(ChaosUnsupportedError, match="MountedDirs"):
        create_cluster(tmp_path, MountedDirs(), None)


def test_create_cluster_default_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFLOW_CHAOS_IMAGE", raising=False)

    cluster = create_cluster(tmp_path, PlainDataDirs(tmp_path), None)

    assert cluster.image == "kaflow:compose-test"
