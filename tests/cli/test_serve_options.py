from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kaflow.cli.exit_codes import UsageError
from kaflow.cli.parser import build_parser
from kaflow.cli.serve_options import SERVE_OPTIONS, ServeSettings, resolve_serve_settings
from kaflow.config import FsyncPolicy, NodeConfig


def parse_serve(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *flags])


def resolve(*flags: str, env: dict[str, str] | None = None) -> ServeSettings:
    return resolve_serve_settings(parse_serve(*flags), env or {})


def test_serve_defaults_match_node_config() -> None:
    settings = resolve()
    defaults = NodeConfig()

    assert settings.config == defaults
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.ready_file is None


def test_serve_flags_set_every_field() -> None:
    settings = resolve(
        "--data-dir", "/srv/kaflow",
        "--host", "0.0.0.0",
        "--port", "9000",
        "--raft-host", "10.0.0.1",
        "--raft-port", "9001",
        "--node-id", "n2",
        "--peer", "10.0.0.2:9001",
        "--peer", "10.0.0.3:9001",
        "--cluster-secret", "s3cret",
        "--fsync", "never",
        "--max-request-bytes", "1024",
        "--max-partitions", "7",
        "--max-open-files", "32",
        "--request-timeout-ms", "2500",
        "--retention-check-interval-ms", "1000",
        "--log-level", "debug",
        "--log-format", "json",
        "--ready-file", "/tmp/ready.json",
        "--shutdown-timeout-ms", "0",
    )  # fmt: skip

    assert settings.config == NodeConfig(
        data_dir=Path("/srv/kaflow"),
        node_id="n2",
        host="0.0.0.0",
        port=9000,
        raft_host="10.0.0.1",
        raft_port=9001,
        peers=("10.0.0.2:9001", "10.0.0.3:9001"),
        cluster_secret="s3cret",
        fsync=FsyncPolicy.NEVER,
        max_request_bytes=1024,
        max_partitions=7,
        max_open_files=32,
        request_timeout_ms=2500,
        retention_check_interval_ms=1000,
    )
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.ready_file == Path("/tmp/ready.json")
    assert settings.shutdown_timeout_ms == 0


def test_serve_env_sets_options() -> None:
    env = {
        "KAFLOW_DATA_DIR": "/var/lib/kaflow",
        "KAFLOW_PORT": "0",
        "KAFLOW_NODE_ID": "7",
        "KAFLOW_PEER": "a:1, b:2",
        "KAFLOW_CLUSTER_SECRET": "from-env",
        "KAFLOW_FSYNC": "NEVER",
        "KAFLOW_MAX_PARTITIONS": "12",
        "KAFLOW_LOG_FORMAT": "json",
    }

    settings = resolve(env=env)

    assert settings.config.data_dir == Path("/var/lib/kaflow")
    assert settings.config.port == 0
    assert settings.config.node_id == "7"
    assert settings.config.peers == ("a:1", "b:2")
    assert settings.config.cluster_secret == "from-env"
    assert settings.config.fsync is FsyncPolicy.NEVER
    assert settings.config.max_partitions == 12
    assert settings.log_format == "json"


def test_serve_flag_takes_precedence_over_env() -> None:
    env = {"KAFLOW_PORT": "9100", "KAFLOW_NODE_ID": "7", "KAFLOW_PEER": "a:1"}

    settings = resolve("--port", "9200", "--peer", "c:3", "--cluster-secret", "x", env=env)

    assert settings.config.port == 9200
    assert settings.config.peers == ("c:3",)
    assert settings.config.node_id == "7"


def test_serve_empty_env_counts_as_unset() -> None:
    settings = resolve(env={"KAFLOW_PORT": "", "KAFLOW_CLUSTER_SECRET": ""})

    assert settings.config.port == NodeConfig().port
    assert settings.config.cluster_secret is None


def test_serve_raft_host_defaults_to_host() -> None:
    assert resolve("--host", "127.0.0.2").config.raft_host == "127.0.0.2"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KAFLOW_PORT", "abc", "invalid KAFLOW_PORT='abc': invalid integer 'abc'"),
        ("KAFLOW_PORT", "65536", "invalid KAFLOW_PORT='65536': invalid port 65536"),
        ("KAFLOW_FSYNC", "sometimes", "expected always or never"),
        ("KAFLOW_PEER", "nohost", "invalid peer 'nohost'"),
        ("KAFLOW_NODE_ID", "a b", "invalid node id 'a b'"),
        ("KAFLOW_MAX_OPEN_FILES", "0", "must be 1 or more"),
        ("KAFLOW_LOG_LEVEL", "LOUD", "invalid log level 'LOUD'"),
    ],
    ids=["port-text", "port-range", "fsync", "peer", "node-id", "open-files", "log-level"],
)
def test_serve_invalid_env_names_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=variable) as raised:
        resolve(env={variable: value})

    assert message in str(raised.value)


def test_serve_invalid_secret_is_not_echoed() -> None:
    with pytest.raises(UsageError) as raised:
        resolve(env={"KAFLOW_CLUSTER_SECRET": "   "})

    assert "KAFLOW_CLUSTER_SECRET=<redacted>" in str(raised.value)
    assert "'   '" not in str(raised.value)


def test_serve_invalid_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_serve("--port", "70000")

    assert raised.value.code == 2
    assert "invalid port 70000" in capsys.readouterr().err


def test_serve_raft_port_zero_rejected_with_peers() -> None:
    with pytest.raises(UsageError, match="--raft-port 0 works only for a single node"):
        resolve("--raft-port", "0", "--peer", "a:1", "--cluster-secret", "x")


def test_serve_same_http_and_raft_port_rejected() -> None:
    with pytest.raises(UsageError, match="both 9000"):
        resolve("--port", "9000", "--raft-port", "9000")


def test_serve_help_shows_default_and_env() -> None:
    for option in SERVE_OPTIONS:
        assert "(default: " in option.help, option.flag
        assert f"env: ${option.env_var}" in option.help, option.flag


def test_serve_env_names_follow_flags() -> None:
    names = {option.flag: option.env_var for option in SERVE_OPTIONS}

    assert names["--data-dir"] == "KAFLOW_DATA_DIR"
    assert names["--port"] == "KAFLOW_PORT"
    assert names["--retention-check-interval-ms"] == "KAFLOW_RETENTION_CHECK_INTERVAL_MS"
