"""`kaflow cluster`: show the cluster, change its membership, start a local cluster.

``status``, ``add-node``, ``remove-node`` and ``transfer-leader`` talk to
the node at --bootstrap; a follower forwards membership changes to the
leader. ``up`` runs a local 3-node cluster in the foreground
(kaflow.cluster.local).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from kaflow.cli.arguments import (
    Handler,
    SubParsers,
    add_client_options,
    add_output_option,
    make_client,
    port_number,
    positive_seconds,
)
from kaflow.cli.exit_codes import ExitCode, UsageError
from kaflow.cli.output import format_table, print_json
from kaflow.errors import LeaderNotAvailableError, NotLeaderError

__all__ = ["format_status", "register"]

_DEFAULT_CHANGE_TIMEOUT_S = 15.0


def register(subparsers: SubParsers) -> None:
    """Add `cluster` and its subcommands to the top-level parser."""
    cluster_parser = subparsers.add_parser(
        "cluster", help="show the cluster, add or remove nodes, start a local cluster"
    )
    actions = cluster_parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    status = _add_action(actions, "status", "show the leader, term, members and lag", _run_status)
    add_output_option(status, "a summary and a member table")

    add = _add_action(
        actions,
        "add-node",
        "add a member by Raft address; then start it with the other members as --peer",
        _run_add,
    )
    add.add_argument("raft_address", metavar="HOST:PORT", help="Raft address of the new member")
    _add_change_timeout(add)

    remove = _add_action(
        actions, "remove-node", "remove a member by node id or Raft address", _run_remove
    )
    remove.add_argument("member", metavar="NODE", help="node id or Raft address of the member")
    _add_change_timeout(remove)

    transfer = _add_action(
        actions,
        "transfer-leader",
        "hand Raft leadership to a member (default: the most caught-up one)",
        _run_transfer,
    )
    transfer.add_argument(
        "target", metavar="NODE", nargs="?", help="node id or Raft address of the new leader"
    )
    _add_change_timeout(transfer)

    up = actions.add_parser(
        "up",
        help="run a local 3-node cluster on 127.0.0.1 until Ctrl-C",
        description=(
            "Start three `kaflow serve` processes on 127.0.0.1 that form one cluster, print "
            "their endpoints, and stop all three on Ctrl-C or SIGTERM. The cluster secret is "
            "generated once and kept in DATA_DIR/cluster-secret (mode 0600)."
        ),
    )
    up.add_argument(
        "--data-dir",
        default="kaflow-data",
        metavar="DIR",
        help="parent directory of the members' data directories node-1..node-3 "
        "(default: ./kaflow-data)",
    )
    up.add_argument(
        "--http-ports",
        type=_port_list,
        default=(8092, 8094, 8096),
        metavar="P1,P2,P3",
        help="HTTP ports of the three members (default: 8092,8094,8096)",
    )
    up.add_argument(
        "--raft-ports",
        type=_port_list,
        default=(8093, 8095, 8097),
        metavar="P1,P2,P3",
        help="Raft ports of the three members (default: 8093,8095,8097)",
    )
    up.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the members, whose logs go to DATA_DIR/node-N.log (default: INFO)",
    )
    up.add_argument(
        "--start-timeout",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="maximum time in seconds to wait for all three members to be ready (default: 60)",
    )
    up.set_defaults(handler=_run_up)


def _add_action(
    actions: SubParsers, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser = actions.add_parser(
        name, help=help_text, description=help_text[:1].upper() + help_text[1:] + "."
    )
    add_client_options(parser, top_level=False)
    parser.set_defaults(handler=handler)
    return parser


def _add_change_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--change-timeout",
        type=positive_seconds,
        default=_DEFAULT_CHANGE_TIMEOUT_S,
        metavar="SECONDS",
        help="maximum time in seconds the leader spends on the change, retries included "
        f"(default: {_DEFAULT_CHANGE_TIMEOUT_S:g})",
    )
    add_output_option(parser, "one line")


def _port_list(text: str) -> tuple[int, ...]:
    ports = tuple(port_number(item.strip()) for item in text.split(","))
    if len(ports) != 3 or 0 in ports:
        raise argparse.ArgumentTypeError(
            f"invalid port list {text!r}: expected three ports in 1..65535, for example "
            "8092,8094,8096"
        )
    return ports


def _request_timeout_s(args: argparse.Namespace) -> float:
    # The node may spend up to --change-timeout on the change, plus a forward to the leader.
    return float(args.timeout) + float(args.change_timeout)


def _run_status(args: argparse.Namespace) -> int:
    status = make_client(args).request_object("GET", "/v1/cluster")
    if args.output == "json":
        print_json(status)
    else:
        print(format_status(status))
    return ExitCode.OK


def _run_add(args: argparse.Namespace) -> int:
    body = {"raft_address": args.raft_address, "timeout_ms": round(args.change_timeout * 1000)}
    result = make_client(args).request_object(
        "POST", "/v1/cluster/members", body=body, timeout_s=_request_timeout_s(args)
    )
    _print_change(args, result, f"added {result.get('raft_address')}")
    return ExitCode.OK


# Removing the leader takes two requests: the first moves leadership away and
# returns not_leader. The second reaches the new leader, which removes it.
_REMOVE_ATTEMPTS = 5
_REMOVE_RETRY_DELAY_S = 0.5


def _run_remove(args: argparse.Namespace) -> int:
    path = "/v1/cluster/members/" + _quote(args.member)
    client = make_client(args)
    for attempt in range(1, _REMOVE_ATTEMPTS + 1):
        try:
            result = client.request_object(
                "DELETE",
                path,
                query={"timeout_ms": round(args.change_timeout * 1000)},
                timeout_s=_request_timeout_s(args),
            )
            break
        except (NotLeaderError, LeaderNotAvailableError):
            if attempt == _REMOVE_ATTEMPTS:
                raise
            time.sleep(_REMOVE_RETRY_DELAY_S)
    node = result.get("node_id") or result.get("raft_address")
    _print_change(args, result, f"removed {node} ({result.get('raft_address')}); stop its process")
    return ExitCode.OK


def _run_transfer(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"timeout_ms": round(args.change_timeout * 1000)}
    if args.target is not None:
        body["target"] = args.target
    result = make_client(args).request_object(
        "POST", "/v1/cluster/leader", body=body, timeout_s=_request_timeout_s(args)
    )
    leader = result.get("leader_id") or result.get("leader_raft_address")
    _print_change(args, result, f"leader is now {leader} ({result.get('leader_raft_address')})")
    return ExitCode.OK


def _run_up(args: argparse.Namespace) -> int:
    # Imported here so that the client commands do not load the process supervisor.
    from pathlib import Path

    from kaflow.cluster.local import LocalCluster, LocalClusterError

    http_ports: tuple[int, ...] = args.http_ports
    raft_ports: tuple[int, ...] = args.raft_ports
    if set(http_ports) & set(raft_ports) or len(set(http_ports + raft_ports)) != 6:
        raise UsageError("--http-ports and --raft-ports must be six different ports")
    cluster = LocalCluster(Path(args.data_dir), http_ports, raft_ports, args.log_level)
    try:
        return cluster.run(args.start_timeout)
    except LocalClusterError as exc:
        print(f"error: {exc}")
        return ExitCode.BROKER_ERROR


def _print_change(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    if args.output == "json":
        print_json(result)
    else:
        print(text)


def _quote(segment: str) -> str:
    import urllib.parse

    return urllib.parse.quote(segment, safe="")


def format_status(status: dict[str, Any]) -> str:
    """Return the text form of a GET /v1/cluster body: a summary and a member table."""
    lines = [
        f"node: {status.get('node_id')} ({status.get('role')})",
        f"leader: {status.get('leader_id') or 'none'}",
        f"term: {status.get('term')}",
        f"commit index: {status.get('commit_index')}",
        f"applied index: {status.get('applied_index')}",
        f"ready: {'yes' if status.get('ready') else 'no'}",
        "",
    ]
    rows = [
        [
            member.get("node_id"),
            member.get("role") or "unknown",
            member.get("raft_address"),
            member.get("http_address") or "-",
            "yes" if member.get("connected") else "no",
            "-" if member.get("lag_entries") is None else member.get("lag_entries"),
        ]
        for member in status.get("members", [])
    ]
    lines.append(format_table(["NODE", "ROLE", "RAFT", "HTTP", "CONNECTED", "LAG_ENTRIES"], rows))
    return "\n".join(lines)
