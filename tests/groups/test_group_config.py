"""The consumer group settings of `kaflow serve`: flags, environment, TOML file, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaflow.cli.exit_codes import UsageError
from kaflow.cli.parser import build_parser
from kaflow.cli.serve_options import resolve_serve_settings
from kaflow.config import NodeConfig


def resolve(*flags: str, env: dict[str, str] | None = None) -> NodeConfig:
    args = build_parser().parse_args(["serve", *flags])
    return resolve_serve_settings(args, env or {}).config


def test_group_settings_defaults() -> None:
    config = resolve()

    assert config.group_min_session_timeout_ms == 1000
    assert config.group_max_session_timeout_ms == 1_800_000
    assert config.group_heartbeat_interval_ms == 3000


def test_group_settings_from_flag_env_and_file(tmp_path: Path) -> None:
    path = tmp_path / "kaflow.toml"
    path.write_text("group-heartbeat-interval-ms = 500\n")
    path.chmod(0o600)

    config = resolve(
        "--config",
        str(path),
        "--group-min-session-timeout-ms",
        "200",
        env={"KAFLOW_GROUP_MAX_SESSION_TIMEOUT_MS": "60000"},
    )

    assert config.group_min_session_timeout_ms == 200
    assert config.group_max_session_timeout_ms == 60_000
    assert config.group_heartbeat_interval_ms == 500


def test_group_session_bounds_reversed_rejected() -> None:
    with pytest.raises(UsageError, match="set the minimum at or below the maximum"):
        resolve("--group-min-session-timeout-ms", "5000", "--group-max-session-timeout-ms", "10")
