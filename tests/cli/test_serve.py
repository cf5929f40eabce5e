from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.cli_runner import KAFLOW, clean_env, describe, run_kaflow
from tests.harness import HttpError, NodeProcess, free_port, http_json, wait_until

READY_LINE = re.compile(
    r"node ready node_id=(?P<node_id>\S+) http=(?P<http>\S+) raft=(?P<raft>\S+) "
    r"data_dir=(?P<data_dir>\S+) pid=(?P<pid>\d+)"
)


class EnvConfiguredNode(NodeProcess):
    """A node whose settings come from KAFLOW_* variables; ``flags`` are added after `serve`."""

    def __init__(self, data_dir: Path, env: dict[str, str], flags: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir, env=env)
        self.flags = flags

    def command(self) -> list[str]:
        return [*KAFLOW, "serve", *self.flags]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serve_stops_cleanly_on_signal(
    node_factory: type[NodeProcess], tmp_path: Path, signum: int
) -> None:
    node = node_factory(tmp_path / "node-1").start()
    assert node.process is not None

    node.signal(signum)
    status = node.process.wait(timeout=30)

    log = node.tail_log(200)
    assert status == 0, log
    assert not node.ready_file.exists()
    assert "http stopped node_id=1" in log
    assert "exiting status=0 node_id=1" in log
    assert "Traceback" not in log


def test_serve_ready_file_and_log_line(node_factory: type[NodeProcess], tmp_path: Path) -> None:
    node = node_factory(tmp_path / "node-1", node_id="n1").start()
    assert node.process is not None

    info = json.loads(node.ready_file.read_text())
    match = READY_LINE.search(node.tail_log(200))

    assert info["node_id"] == "n1"
    assert info["pid"] == node.process.pid
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", info["http"])
    assert info["raft"] == f"127.0.0.1:{node.raft_port}"
    assert match is not None, node.tail_log()
    assert match["http"] == info["http"]
    assert match["node_id"] == "n1"
    assert match["raft"] == info["raft"]
    assert Path(match["data_dir"]) == (tmp_path / "node-1").resolve()
    assert http_json("GET", info["http"] + "/v1/health/live")[1] == {"status": "live"}


def test_serve_json_log_format(node_factory: type[NodeProcess], tmp_path: Path) -> None:
    node = node_factory(tmp_path / "node-1", extra_args=("--log-format", "json")).start()
    assert node.stop() == 0

    entries = [json.loads(line) for line in node.log_path.read_text().splitlines()]

    ready = [entry for entry in entries if entry["message"].startswith("node ready ")]
    assert len(ready) == 1
    assert ready[0]["level"] == "INFO"
    assert ready[0]["logger"] == "kaflow.cli.serve"
    assert {"ts", "level", "logger", "message"} <= set(entries[0])


def test_serve_reads_env_variables(tmp_path: Path) -> None:
    data_dir = tmp_path / "from-env"
    env = {
        "KAFLOW_DATA_DIR": str(data_dir),
        "KAFLOW_NODE_ID": "7",
        "KAFLOW_HOST": "127.0.0.1",
        "KAFLOW_PORT": "0",
        "KAFLOW_RAFT_PORT": str(free_port()),
        "KAFLOW_READY_FILE": str(tmp_path / "ready.json"),
        "KAFLOW_MAX_PARTITIONS": "2",
    }
    node = EnvConfiguredNode(data_dir, env)
    node.ready_file = tmp_path / "ready.json"
    try:
        node.start()
        info = json.loads(node.ready_file.read_text())
        with pytest.raises(HttpError) as rejected:
            node.create_topic("too-wide", partitions=3)
    finally:
        node.kill()

    assert info["node_id"] == "7"
    assert (data_dir / "raft").is_dir()
    assert f"raft=127.0.0.1:{env['KAFLOW_RAFT_PORT']}" in node.tail_log(200)
    assert rejected.value.code == "invalid_partitions"


def test_serve_flag_overrides_env(tmp_path: Path) -> None:
    env = {
        "KAFLOW_DATA_DIR": str(tmp_path / "node"),
        "KAFLOW_NODE_ID": "7",
        "KAFLOW_PORT": "0",
        "KAFLOW_RAFT_PORT": str(free_port()),
    }
    node = EnvConfiguredNode(
        tmp_path / "node", env, ("--node-id", "9", "--ready-file", str(tmp_path / "r.json"))
    )
    node.ready_file = tmp_path / "r.json"
    try:
        node.start()
        info = json.loads(node.ready_file.read_text())
    finally:
        node.kill()

    assert info["node_id"] == "9"


def serve_once(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `kaflow serve` that is expected to fail before it becomes ready."""
    return run_kaflow(
        "serve",
        "--data-dir", str(tmp_path / "data"),
        "--raft-port", str(free_port()),
        *flags,
        env=env,
        timeout=60,
    )  # fmt: skip


def test_serve_port_in_use_fails(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = serve_once(tmp_path, "--port", str(port))

    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1, describe(result)
    assert lines == [
        f"error: cannot listen for HTTP on 127.0.0.1:{port}: Address already in use; "
        "choose another --host or --port, or stop the process that uses the port"
    ]


def test_serve_data_dir_file_fails(tmp_path: Path) -> None:
    regular_file = tmp_path / "not-a-dir"
    regular_file.write_text("x")

    result = serve_once(tmp_path, "--port", "0", "--data-dir", str(regular_file))

    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1, describe(result)
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith(f"error: cannot create data directory '{regular_file}'")
    assert "--data-dir" in lines[0]


def test_serve_peers_need_secret(tmp_path: Path) -> None:
    result = serve_once(tmp_path, "--port", "0", "--peer", f"127.0.0.1:{free_port()}")

    stderr = result.stderr.decode()
    assert result.returncode == 1, describe(result)
    assert "error: node failed to start: invalid_config: " in stderr
    assert "Traceback" not in stderr


def test_serve_bad_option_is_usage_error(tmp_path: Path) -> None:
    result = serve_once(tmp_path, "--fsync", "sometimes")

    assert result.returncode == 2, describe(result)
    assert b"invalid fsync policy 'sometimes'" in result.stderr
    assert not (tmp_path / "data").exists()


def test_serve_bad_env_is_usage_error(tmp_path: Path) -> None:
    result = serve_once(tmp_path, env={"KAFLOW_PORT": "eighty"})

    assert result.returncode == 2, describe(result)
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("usage: kaflow serve ")
    assert (
        lines[-1] == "kaflow serve: error: invalid KAFLOW_PORT='eighty': invalid integer 'eighty'"
    )


def test_serve_second_signal_forces_exit(node_factory: type[NodeProcess], tmp_path: Path) -> None:
    node = node_factory(tmp_path / "node-1").start()
    assert node.process is not None
    # While the process is stopped both signals stay pending, so the second
    # one arrives before the clean stop that the first one starts can finish.
    node.signal(signal.SIGSTOP)
    wait_until(lambda: _process_state(node) == "T", 10, "process stopped")
    node.signal(signal.SIGTERM)
    node.signal(signal.SIGINT)
    wait_until(lambda: _pending_signals(node) >= {signal.SIGTERM, signal.SIGINT}, 10, "pending")
    node.signal(signal.SIGCONT)

    status = node.process.wait(timeout=30)

    assert status == 1, node.tail_log()
    assert "exiting without a clean stop" in node.tail_log()


def _proc_status(node: NodeProcess) -> str:
    assert node.process is not None
    return Path(f"/proc/{node.process.pid}/status").read_text()


def _process_state(node: NodeProcess) -> str:
    match = re.search(r"^State:\s*(\S)", _proc_status(node), re.MULTILINE)
    assert match is not None
    return match[1]


def _pending_signals(node: NodeProcess) -> set[int]:
    match = re.search(r"^ShdPnd:\s*([0-9a-f]+)$", _proc_status(node), re.MULTILINE)
    assert match is not None
    mask = int(match[1], 16)
    return {number for number in range(1, 64) if mask & (1 << (number - 1))}


def test_python_dash_m_matches_console_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kaflow", "--help"],
        capture_output=True,
        env=clean_env(),
        check=False,
    )

    assert result.returncode == 0
    assert b"exit status:" in result.stdout
