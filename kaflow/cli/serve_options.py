"""Options of `kaflow serve`: one per NodeConfig field plus logging and process settings.

Every option can also be set through the environment variable
``KAFLOW_<OPTION>`` (``--data-dir`` is ``KAFLOW_DATA_DIR``) and through
the TOML file named by ``--config`` or ``KAFLOW_CONFIG``
(kaflow.cluster.config_file). A flag takes precedence over the variable,
the variable over the file, and the file over the default; an empty
variable counts as unset. ``KAFLOW_PEER`` takes a comma-separated list.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaflow.cli.arguments import Handler, SubParsers, non_negative_int, port_number, positive_int
from kaflow.cli.exit_codes import UsageError
from kaflow.cli.logging_setup import LOG_FORMATS, LOG_LEVELS
from kaflow.cluster.config_file import ConfigFileError, ConfigKey, read_config_file
from kaflow.config import FsyncPolicy, NodeConfig

__all__ = ["SERVE_OPTIONS", "ServeOption", "ServeSettings", "register", "resolve_serve_settings"]

_NODE_DEFAULTS = NodeConfig()
_NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class ServeOption:
    """One `kaflow serve` option: its flag, where its value goes, and how it is parsed."""

    flag: str
    # NodeConfig field, or a ServeSettings field for the options outside NodeConfig.
    field: str
    parse: Callable[[str], Any]
    default: Any
    # Help text without the default and environment variable, which are appended.
    description: str
    metavar: str
    default_text: str
    repeatable: bool = False
    # A secret value is never echoed in error messages.
    secret: bool = False

    @property
    def env_var(self) -> str:
        return "KAFLOW_" + self.flag.removeprefix("--").upper().replace("-", "_")

    @property
    def help(self) -> str:
        env_text = f"${self.env_var}"
        if self.repeatable:
            env_text += ", comma-separated"
        return f"{self.description} (default: {self.default_text}; env: {env_text})"


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Everything `kaflow serve` needs after flags and environment are merged."""

    config: NodeConfig
    log_level: str
    log_format: str
    ready_file: Path | None
    shutdown_timeout_ms: int


def _non_empty(value_name: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"invalid {value_name}: must not be empty")
        return text

    return parse


def _path(text: str) -> Path:
    return Path(_non_empty("path")(text))


def _node_id(text: str) -> str:
    if not _NODE_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid node id {text!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return text


def _peer(text: str) -> str:
    host, separator, port_text = text.rpartition(":")
    if not separator or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid peer {text!r}: expected HOST:PORT with a port in 1..65535, "
            "for example 10.0.0.2:8093"
        )
    return text


def _advertised_url(text: str) -> str:
    parsed = urllib.parse.urlsplit(text)
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
    ):
        raise argparse.ArgumentTypeError(
            f"invalid advertised URL {text!r}: expected http://HOST:PORT with no path, "
            "for example http://10.0.0.2:8092"
        )
    return text.rstrip("/")


def _fsync(text: str) -> FsyncPolicy:
    try:
        return FsyncPolicy(text.lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid fsync policy {text!r}: expected always or never"
        ) from None


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in (choice.lower() for choice in choices):
            raise argparse.ArgumentTypeError(
                f"invalid {name} {text!r}: expected one of {', '.join(choices)}"
            )
        return text.upper() if name == "log level" else text.lower()

    return parse


SERVE_OPTIONS: tuple[ServeOption, ...] = (
    ServeOption(
        "--data-dir", "data_dir", _path, _NODE_DEFAULTS.data_dir,
        "directory for partition logs and Raft state", "DIR", "./kaflow-data",
    ),
    ServeOption(
        "--host", "host", _non_empty("host"), _NODE_DEFAULTS.host,
        "address the HTTP API listens on", "HOST", _NODE_DEFAULTS.host,
    ),
    ServeOption(
        "--port", "port", port_number, _NODE_DEFAULTS.port,
        "TCP port of the HTTP API; 0 picks a free port", "PORT", str(_NODE_DEFAULTS.port),
    ),
    ServeOption(
        "--raft-host", "raft_host", _non_empty("Raft host"), None,
        "address of this node's Raft endpoint, which the other members connect to",
        "HOST", "the --host value",
    ),
    ServeOption(
        "--raft-port", "raft_port", port_number, _NODE_DEFAULTS.raft_port,
        "TCP port of this node's Raft endpoint; 0 picks a free port (single node only)",
        "PORT", str(_NODE_DEFAULTS.raft_port),
    ),
    ServeOption(
        "--advertised-url", "advertised_url", _advertised_url, None,
        "HTTP URL that clients and the other members use to reach this node; registered "
        "cluster-wide", "URL", "http://HOST:PORT from --host and the bound --port",
    ),
    ServeOption(
        "--node-id", "node_id", _node_id, _NODE_DEFAULTS.node_id,
        "this node's id: 1 to 64 letters, digits, '.', '_' or '-'", "ID", _NODE_DEFAULTS.node_id,
    ),
    ServeOption(
        "--peer", "peers", _peer, (),
        "Raft address of another cluster member; repeat the flag for each member", "HOST:PORT",
        "none, a single-node cluster", repeatable=True,
    ),
    ServeOption(
        "--cluster-secret", "cluster_secret", _non_empty("cluster secret"), None,
        "shared secret that authenticates and encrypts Raft traffic; required with --peer. "
        "Prefer the environment variable: other local users can read flags in the process list",
        "SECRET", "none", secret=True,
    ),
    ServeOption(
        "--fsync", "fsync", _fsync, _NODE_DEFAULTS.fsync,
        "when written data is forced to disk: always (before a write is acknowledged) or "
        "never (left to the operating system)", "always|never", _NODE_DEFAULTS.fsync.value,
    ),
    ServeOption(
        "--max-request-bytes", "max_request_bytes", positive_int,
        _NODE_DEFAULTS.max_request_bytes, "maximum HTTP request body size in bytes", "BYTES",
        str(_NODE_DEFAULTS.max_request_bytes),
    ),
    ServeOption(
        "--max-partitions", "max_partitions", positive_int, _NODE_DEFAULTS.max_partitions,
        "maximum number of partitions of one topic", "N", str(_NODE_DEFAULTS.max_partitions),
    ),
    ServeOption(
        "--max-open-files", "max_open_files", positive_int, _NODE_DEFAULTS.max_open_files,
        "maximum number of segment and index files kept open at once", "N",
        str(_NODE_DEFAULTS.max_open_files),
    ),
    ServeOption(
        "--request-timeout-ms", "request_timeout_ms", positive_int,
        _NODE_DEFAULTS.request_timeout_ms,
        "maximum time in milliseconds a write waits for Raft commit before it fails with "
        "request_timed_out", "MS", str(_NODE_DEFAULTS.request_timeout_ms),
    ),
    ServeOption(
        "--retention-check-interval-ms", "retention_check_interval_ms", positive_int,
        _NODE_DEFAULTS.retention_check_interval_ms,
        "time in milliseconds between checks of retention.ms and retention.bytes", "MS",
        str(_NODE_DEFAULTS.retention_check_interval_ms),
    ),
    ServeOption(
        "--raft-compaction-bytes", "raft_compaction_bytes", positive_int,
        _NODE_DEFAULTS.raft_compaction_bytes,
        "advanced: bytes of Raft commands after which the Raft log is compacted into a "
        "snapshot; the uncompacted log is kept in memory, so this bounds its size", "BYTES",
        str(_NODE_DEFAULTS.raft_compaction_bytes),
    ),
    ServeOption(
        "--raft-compaction-entries", "raft_compaction_entries", positive_int,
        _NODE_DEFAULTS.raft_compaction_entries,
        "advanced: number of Raft log entries after which the log is compacted into a "
        "snapshot", "N", str(_NODE_DEFAULTS.raft_compaction_entries),
    ),
    ServeOption(
        "--group-min-session-timeout-ms", "group_min_session_timeout_ms", positive_int,
        _NODE_DEFAULTS.group_min_session_timeout_ms,
        "minimum session timeout in milliseconds a consumer group member may request "
        "(Kafka's group.min.session.timeout.ms)", "MS",
        str(_NODE_DEFAULTS.group_min_session_timeout_ms),
    ),
    ServeOption(
        "--group-max-session-timeout-ms", "group_max_session_timeout_ms", positive_int,
        _NODE_DEFAULTS.group_max_session_timeout_ms,
        "maximum session timeout in milliseconds a consumer group member may request "
        "(Kafka's group.max.session.timeout.ms)", "MS",
        str(_NODE_DEFAULTS.group_max_session_timeout_ms),
    ),
    ServeOption(
        "--group-heartbeat-interval-ms", "group_heartbeat_interval_ms", positive_int,
        _NODE_DEFAULTS.group_heartbeat_interval_ms,
        "heartbeat interval in milliseconds returned to consumer group members (Kafka's "
        "heartbeat.interval.ms), at most a third of the member's session timeout", "MS",
        str(_NODE_DEFAULTS.group_heartbeat_interval_ms),
    ),
    ServeOption(
        "--log-level", "log_level", _choice("log level", LOG_LEVELS), "INFO",
        "minimum level of the log lines written to stderr: " + ", ".join(LOG_LEVELS),
        "LEVEL", "INFO",
    ),
    ServeOption(
        "--log-format", "log_format", _choice("log format", LOG_FORMATS), "text",
        "format of the log lines on stderr: text, or json with one object per line",
        "text|json", "text",
    ),
    ServeOption(
        "--ready-file", "ready_file", _path, None,
        "once the node serves requests, atomically write a JSON file with its HTTP address, "
        "pid and node id there; the file is removed on a clean stop", "PATH", "none",
    ),
    ServeOption(
        "--shutdown-timeout-ms", "shutdown_timeout_ms", non_negative_int, 10_000,
        "maximum time in milliseconds that in-flight HTTP requests get to finish after "
        "SIGINT or SIGTERM; long polls end at once", "MS", "10000",
    ),
)  # fmt: skip

_SETTINGS_FIELDS = {field.name for field in dataclasses.fields(ServeSettings)}


def register(subparsers: SubParsers, handler: Handler) -> None:
    """Add `serve` to the top-level parser."""
    parser = subparsers.add_parser(
        "serve",
        help="run a Kaflow node with its HTTP API",
        description=(
            "Run a Kaflow node in the foreground until SIGINT or SIGTERM. Once it serves "
            "requests it logs 'node ready node_id=... http=... raft=... data_dir=...'."
        ),
    )
    parser.add_argument(
        "--config",
        dest="config_file",
        type=_path,
        default=None,
        metavar="FILE",
        help='TOML file with option names as keys, for example node-id = "2"; flags and '
        "environment variables take precedence over it (default: none; env: $KAFLOW_CONFIG)",
    )
    for option in SERVE_OPTIONS:
        parser.add_argument(
            option.flag,
            dest=option.field,
            type=option.parse,
            action="append" if option.repeatable else "store",
            default=None,
            metavar=option.metavar,
            help=option.help,
        )
    parser.set_defaults(handler=handler)


def resolve_serve_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> ServeSettings:
    """Merge flags, environment variables and defaults; raise UsageError on invalid values."""
    from_file = _read_config_file(args, environ)
    values = {
        option.field: _resolve_option(option, args, environ, from_file) for option in SERVE_OPTIONS
    }
    if values["raft_host"] is None:
        values["raft_host"] = values["host"]
    values["peers"] = tuple(values["peers"])

    settings_values = {name: values.pop(name) for name in list(values) if name in _SETTINGS_FIELDS}
    config = NodeConfig(**values)
    _check_addresses(config)
    _check_group_timeouts(config)
    return ServeSettings(config=config, **settings_values)


def _read_config_file(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    path = getattr(args, "config_file", None)
    if path is None and environ.get("KAFLOW_CONFIG"):
        path = Path(environ["KAFLOW_CONFIG"])
    if path is None:
        return {}
    keys = [
        ConfigKey(
            option.flag.removeprefix("--"),
            option.field,
            option.parse,
            option.repeatable,
            option.secret,
        )
        for option in SERVE_OPTIONS
    ]
    try:
        return read_config_file(path, keys)
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None


def _resolve_option(
    option: ServeOption,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    from_file: Mapping[str, Any],
) -> Any:
    from_flag = getattr(args, option.field, None)
    if from_flag is not None:
        return from_flag

    raw = environ.get(option.env_var, "")
    if not raw:
        return from_file.get(option.field, option.default)
    try:
        if option.repeatable:
            return [option.parse(item.strip()) for item in raw.split(",") if item.strip()]
        return option.parse(raw)
    except argparse.ArgumentTypeError as exc:
        displayed = "<redacted>" if option.secret else repr(raw)
        raise UsageError(f"invalid {option.env_var}={displayed}: {exc}") from None


def _check_addresses(config: NodeConfig) -> None:
    if config.raft_port == 0 and config.peers:
        raise UsageError(
            "--raft-port 0 works only for a single node: with --peer the other members "
            "need this node's fixed Raft port"
        )
    if config.port != 0 and config.port == config.raft_port and config.host == config.raft_host:
        raise UsageError(
            f"--port and --raft-port are both {config.port} on {config.host}; "
            "give the HTTP API and Raft different ports"
        )


def _check_group_timeouts(config: NodeConfig) -> None:
    if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms:
        raise UsageError(
            f"--group-min-session-timeout-ms {config.group_min_session_timeout_ms} is above "
            f"--group-max-session-timeout-ms {config.group_max_session_timeout_ms}; set the "
            "minimum at or below the maximum"
        )
