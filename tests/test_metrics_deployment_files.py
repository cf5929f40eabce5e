"""The deployment files in cluster/: the environment template and the systemd unit."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from kaflow.cli.parser import build_parser
from kaflow.cli.serve_options import SERVE_OPTIONS, resolve_serve_settings
from kaflow.config import FsyncPolicy

CLUSTER_DIR = Path(__file__).resolve().parent.parent / "cluster"
ENV_TEMPLATE = CLUSTER_DIR / "kaflow.env.example"
UNIT_FILE = CLUSTER_DIR / "kaflow.service"

_ASSIGNMENT = re.compile(r"#?(KAFLOW_[A-Z0-9_]+)=(.*)")


def read_env_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """Return the variables set in ``path`` and every variable named in an assignment.

    Lines like ``#KAFLOW_X=value`` count as documented but unset, as systemd
    skips comment lines.
    """
    assigned: dict[str, str] = {}
    documented: set[str] = set()
    for line in path.read_text().splitlines():
        match = _ASSIGNMENT.fullmatch(line.strip())
        if match is None:
            continue
        documented.add(match.group(1))
        if not line.startswith("#"):
            assigned[match.group(1)] = match.group(2)
    return assigned, documented


def test_env_template_documents_every_serve_option() -> None:
    _, documented = read_env_file(ENV_TEMPLATE)
    expected = {option.env_var for option in SERVE_OPTIONS} | {"KAFLOW_CONFIG"}
    assert sorted(expected - documented) == []
    assert sorted(documented - expected) == []


def test_env_template_resolves_to_cluster_member() -> None:
    assigned, _ = read_env_file(ENV_TEMPLATE)
    args = build_parser().parse_args(["serve"])
    settings = resolve_serve_settings(args, assigned)
    config = settings.config
    assert config.node_id == "1"
    assert config.raft_address == "10.0.1.10:8093"
    assert config.peers == ("10.0.2.10:8093", "10.0.3.10:8093")
    assert config.cluster_secret
    assert config.fsync is FsyncPolicy.ALWAYS
    assert config.data_dir == Path("/var/lib/kaflow")
    assert settings.log_level == "INFO"


def test_unit_file_service_settings() -> None:
    # strict=False: systemd allows a key more than once (SystemCallFilter=).
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT_FILE.read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("kaflow serve")
    assert service["EnvironmentFile"] == "/etc/kaflow/kaflow.env"
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 4096
    assert service["StateDirectory"] == "kaflow"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_stop_timeout_exceeds_shutdown_timeout() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT_FILE.read_text())
    assigned, _ = read_env_file(ENV_TEMPLATE)
    stop_timeout_s = int(unit["Service"]["TimeoutStopSec"])
    assert stop_timeout_s * 1000 > int(assigned["KAFLOW_SHUTDOWN_TIMEOUT_MS"])
