from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from kaflow.cli.exit_codes import UsageError
from kaflow.cli.parser import build_parser
from kaflow.cli.serve_options import ServeSettings, resolve_serve_settings
from kaflow.errors import InvalidConfigError
from kaflow.replication.replica import check_node_config


def resolve(*flags: str, env: dict[str, str] | None = None) -> ServeSettings:
    args: argparse.Namespace = build_parser().parse_args(["serve", *flags])
    return resolve_serve_settings(args, env or {})


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kaflow.toml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_config_file_sets_node_options(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'node-id = "n2"\n'
        "port = 9100\n"
        "raft-port = 9101\n"
        'peer = ["127.0.0.1:9103", "127.0.0.1:9105"]\n'
        'cluster-secret = "s3cret"\n'
        'advertised-url = "http://kaflow-2.internal:9100/"\n',
    )

    config = resolve("--config", str(path)).config

    assert config.node_id == "n2"
    assert config.port == 9100
    assert config.raft_port == 9101
    assert config.peers == ("127.0.0.1:9103", "127.0.0.1:9105")
    assert config.cluster_secret == "s3cret"
    assert config.advertised_url == "http://kaflow-2.internal:9100"
    assert config.advertised_http_url == "http://kaflow-2.internal:9100"


def test_config_precedence_flag_env_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node-id = "from-file"\nport = 9100\nraft-port = 9101\n')
    env = {"KAFLOW_CONFIG": str(path), "KAFLOW_NODE_ID": "from-env", "KAFLOW_PORT": "9200"}

    config = resolve("--port", "9300", env=env).config

    assert config.port == 9300
    assert config.node_id == "from-env"
    assert config.raft_port == 9101


def test_config_flag_overrides_env_path(tmp_path: Path) -> None:
    flag_file = write_config(tmp_path, 'node-id = "flag-file"\n')
    env_file = tmp_path / "other.toml"
    env_file.write_text('node-id = "env-file"\n')

    config = resolve("--config", str(flag_file), env={"KAFLOW_CONFIG": str(env_file)}).config

    assert config.node_id == "flag-file"


def test_config_unknown_key_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node-id = "1"\nraft-prot = 9101\n')

    with pytest.raises(UsageError, match="unknown key 'raft-prot'"):
        resolve("--config", str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 70000\n", "invalid port = '70000'"),
        ("port = true\n", "expected a string or an integer"),
        ("peer = [1, 2]\n", "expected an array of strings"),
        ('advertised-url = "ftp://x"\n', "invalid advertised URL"),
        ("node-id = \n", "not valid TOML"),
    ],
    ids=["range", "bool", "peer-ints", "url-scheme", "syntax"],
)
def test_config_invalid_value_names_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)

    with pytest.raises(UsageError, match=message):
        resolve("--config", str(path))


def test_config_missing_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read --config file"):
        resolve("--config", str(tmp_path / "missing.toml"))


def test_config_secret_value_not_echoed(tmp_path: Path) -> None:
    path = write_config(tmp_path, "cluster-secret = 12345678\n")

    config = resolve("--config", str(path)).config

    assert config.cluster_secret == "12345678"


def test_peers_without_secret_rejected() -> None:
    config = resolve("--peer", "127.0.0.1:9101").config

    with pytest.raises(InvalidConfigError, match="--cluster-secret") as raised:
        check_node_config(config)

    assert "KAFLOW_CLUSTER_SECRET" in raised.value.message


def test_peers_with_secret_env_accepted() -> None:
    config = resolve("--peer", "127.0.0.1:9101", env={"KAFLOW_CLUSTER_SECRET": "x"}).config

    assert config.peers == ("127.0.0.1:9101",)


def test_advertised_url_defaults_to_http_address() -> None:
    config = resolve("--host", "127.0.0.2", "--port", "9000").config

    assert config.advertised_url is None
    assert config.advertised_http_url == "http://127.0.0.2:9000"


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:9000", "http://", "http://host:9000/path", "http://host:9000?x=1"],
    ids=["no-scheme", "no-host", "path", "query"],
)
def test_advertised_url_invalid_rejected(url: str) -> None:
    with pytest.raises(SystemExit):
        resolve("--advertised-url", url)
