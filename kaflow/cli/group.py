"""`kaflow group`: list, describe and delete consumer groups, and reset their offsets.

The subcommands and flags follow Kafka's kafka-consumer-groups tool:
``reset-offsets`` takes ``--to-earliest``, ``--to-latest``, ``--to-offset``,
``--to-datetime`` or ``--shift-by``, and only computes the new offsets
unless ``--execute`` is given. The node rejects ``delete`` and ``reset-offsets
--execute`` with group_not_empty while the group has members.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Iterable
from typing import Any

from kaflow.cli.arguments import (
    Handler,
    SubParsers,
    add_client_options,
    add_output_option,
    group_name,
    make_client,
    non_negative_int,
)
from kaflow.cli.exit_codes import ExitCode, UsageError
from kaflow.cli.output import format_table, print_json
from kaflow.cli.positions import parse_timestamp_ms

__all__ = [
    "format_group",
    "format_group_list",
    "format_reset_plan",
    "parse_partition_list",
    "parse_topic_partitions",
    "register",
]

# Printed for a null or empty value, as kafka-consumer-groups does for a null one.
_NONE = "-"
# Partition numbers are int32 and offsets int64 on the wire, as in Kafka.
_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1


def register(subparsers: SubParsers) -> None:
    """Add `group` and its subcommands to the top-level parser."""
    group_parser = subparsers.add_parser(
        "group", help="list, describe and delete consumer groups, and reset their offsets"
    )
    actions = group_parser.add_subparsers(dest="group_command", metavar="ACTION", required=True)

    _add_action(actions, "list", "list consumer groups with state, epoch and members", _run_list)

    describe = _add_action(
        actions,
        "describe",
        "show a group's state, members, and offsets with lag and owner",
        _run_describe,
    )
    describe.add_argument("group", type=group_name, metavar="GROUP", help="consumer group name")
    sections = describe.add_mutually_exclusive_group()
    for flag, section_help in (
        ("--state", "show only the group's state, group epoch and member count"),
        ("--members", "show only the members and their assignments"),
        ("--offsets", "show only the offsets, lag and owner of each partition"),
    ):
        sections.add_argument(
            flag, dest="section", action="store_const", const=flag[2:], help=section_help
        )

    delete = _add_action(
        actions,
        "delete",
        "delete a group's committed offsets; the group must have no members",
        _run_delete,
    )
    delete.add_argument("group", type=group_name, metavar="GROUP", help="consumer group name")

    reset = _add_action(
        actions,
        "reset-offsets",
        "compute new committed offsets for a topic, and commit them with --execute",
        _run_reset,
    )
    _add_reset_arguments(reset)


def _add_action(
    actions: SubParsers, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser = actions.add_parser(
        name, help=help_text, description=help_text[:1].upper() + help_text[1:] + "."
    )
    add_client_options(parser, top_level=False)
    add_output_option(parser, "human-readable tables")
    parser.set_defaults(handler=handler)
    return parser


def _add_reset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("group", type=group_name, metavar="GROUP", help="consumer group name")
    parser.add_argument(
        "--topic",
        required=True,
        type=parse_topic_partitions,
        metavar="TOPIC[:P,P...]",
        help="topic whose offsets to reset; TOPIC:0,1 limits the reset to those partitions, "
        "as in Kafka",
    )
    parser.add_argument(
        "--partitions",
        type=parse_partition_list,
        metavar="P,P...",
        help="comma-separated partitions to reset (default: every partition of the topic)",
    )

    strategy = parser.add_mutually_exclusive_group(required=True)
    strategy.add_argument(
        "--to-earliest",
        dest="reset_to",
        action="store_const",
        const=("earliest", None),
        help="reset to the log start offset",
    )
    strategy.add_argument(
        "--to-latest",
        dest="reset_to",
        action="store_const",
        const=("latest", None),
        help="reset to the high watermark, skipping every record not yet consumed",
    )
    strategy.add_argument(
        "--to-offset",
        dest="reset_to",
        type=lambda text: ("offset", _parse_offset(text)),
        metavar="OFFSET",
        help="reset to OFFSET, clamped to the partition's log start offset and high watermark",
    )
    strategy.add_argument(
        "--to-datetime",
        dest="reset_to",
        type=lambda text: ("timestamp", parse_timestamp_ms(text)),
        metavar="TIME",
        help="reset to the first record whose timestamp is at or after TIME (ISO-8601 such as "
        "2024-05-01T12:00:00Z, local time without a UTC offset, or ms since the Unix epoch); "
        "the high watermark when no record is that new",
    )
    strategy.add_argument(
        "--shift-by",
        dest="reset_to",
        type=lambda text: ("shift", _parse_shift(text)),
        metavar="N",
        help="move the committed offset by N, which may be negative, clamped to the "
        "partition's range",
    )

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="only print the new offsets (the default)",
    )
    mode.add_argument(
        "--execute",
        action="store_true",
        help="commit the new offsets; rejected while the group has members",
    )


def parse_partition_list(text: str) -> list[int]:
    """Parse ``0,1,2`` into sorted partition numbers, rejecting empty items and duplicates."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(
            f"invalid partition list {text!r}: expected partition numbers separated by commas, "
            "for example 0,1,2"
        )
    partitions = [_parse_partition(item) for item in items]
    duplicates = sorted({p for p in partitions if partitions.count(p) > 1})
    if duplicates:
        listed = ",".join(str(p) for p in duplicates)
        raise argparse.ArgumentTypeError(
            f"invalid partition list {text!r}: partition {listed} is given more than once"
        )
    return sorted(partitions)


def parse_topic_partitions(text: str) -> tuple[str, list[int] | None]:
    """Parse ``--topic``: ``TOPIC`` or Kafka's ``TOPIC:0,1`` with chosen partitions."""
    topic, separator, partitions = text.partition(":")
    if not topic:
        raise argparse.ArgumentTypeError(
            f"invalid topic {text!r}: expected TOPIC or TOPIC:P,P, for example orders:0,1"
        )
    if not separator:
        return topic, None
    return topic, parse_partition_list(partitions)


def _parse_partition(text: str) -> int:
    partition = non_negative_int(text)
    if partition > _MAX_PARTITION:
        raise argparse.ArgumentTypeError(
            f"invalid partition {partition}: must be at most {_MAX_PARTITION}"
        )
    return partition


def _parse_offset(text: str) -> int:
    offset = non_negative_int(text)
    if offset > _MAX_OFFSET:
        raise argparse.ArgumentTypeError(f"invalid offset {offset}: must be at most {_MAX_OFFSET}")
    return offset


def _parse_shift(text: str) -> int:
    try:
        shift = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shift {text!r}: expected a whole number of offsets, such as 10 or -10"
        ) from None
    if abs(shift) > _MAX_OFFSET:
        raise argparse.ArgumentTypeError(
            f"invalid shift {shift}: must be between -{_MAX_OFFSET} and {_MAX_OFFSET}"
        )
    return shift


def _group_path(group: str, suffix: str = "") -> str:
    return f"/v1/groups/{urllib.parse.quote(group, safe='')}{suffix}"


def _run_list(args: argparse.Namespace) -> int:
    listed = make_client(args).request_object("GET", "/v1/groups")
    if args.output == "json":
        print_json(listed)
    else:
        print(format_group_list(listed.get("groups", [])))
    return ExitCode.OK


def _run_describe(args: argparse.Namespace) -> int:
    described = make_client(args).request_object("GET", _group_path(args.group))
    if args.output == "json":
        print_json(described)
    else:
        print(format_group(described, args.section))
    return ExitCode.OK


def _run_delete(args: argparse.Namespace) -> int:
    deleted = make_client(args).request("DELETE", _group_path(args.group))
    if args.output == "json":
        print_json(deleted if isinstance(deleted, dict) else {"group": args.group, "deleted": True})
    else:
        print(f"deleted consumer group {args.group}")
    return ExitCode.OK


def _run_reset(args: argparse.Namespace) -> int:
    topic, topic_partitions = args.topic
    if topic_partitions is not None and args.partitions is not None:
        raise UsageError(
            f"partitions are given twice, in --topic {topic}:... and in --partitions; "
            "give them only once"
        )
    partitions = topic_partitions if topic_partitions is not None else args.partitions
    to, value = args.reset_to
    body = {
        "topic": topic,
        "partitions": partitions,
        "to": to,
        "value": value,
        "execute": bool(args.execute),
    }

    plan = make_client(args).request_object(
        "POST", _group_path(args.group, "/reset-offsets"), body=body
    )
    if args.output == "json":
        print_json(plan)
    else:
        print(format_reset_plan(plan))
    if plan.get("dry_run", not args.execute):
        print(
            "note: dry run, nothing was committed; add --execute to commit these offsets",
            file=sys.stderr,
        )
    return ExitCode.OK


def _cell(value: Any) -> Any:
    # An empty client id would leave a blank cell that shifts the columns for readers like awk.
    return _NONE if value is None or value == "" else value


def _format_partitions(entries: Iterable[dict[str, Any]]) -> str:
    """Return ``topic(0,1),other(2)``, Kafka's form of an assignment, or '-' for none."""
    parts = [
        f"{entry['topic']}({','.join(str(p) for p in sorted(entry['partitions']))})"
        for entry in sorted(entries, key=lambda entry: str(entry["topic"]))
        if entry.get("partitions")
    ]
    return ",".join(parts) or _NONE


def _partition_count(entries: Iterable[dict[str, Any]]) -> int:
    return sum(len(entry.get("partitions", [])) for entry in entries)


def format_group_list(groups: list[dict[str, Any]]) -> str:
    """Return a GROUP / STATE / GROUP-EPOCH / #MEMBERS table, sorted by group name."""
    rows = [
        (group["group"], group.get("state"), group.get("group_epoch"), group.get("members"))
        for group in sorted(groups, key=lambda group: str(group["group"]))
    ]
    return format_table(("GROUP", "STATE", "GROUP-EPOCH", "#MEMBERS"), rows)


def format_group(described: dict[str, Any], section: str | None = None) -> str:
    """Return the text form of a group description.

    ``section`` is "state", "members" or "offsets" for one table, or None
    for all three.
    """
    formatters = {"state": _format_state, "offsets": _format_offsets, "members": _format_members}
    chosen = [section] if section is not None else ["state", "offsets", "members"]
    return "\n\n".join(formatters[name](described) for name in chosen)


def _format_state(described: dict[str, Any]) -> str:
    row = (
        described["group"],
        described.get("state"),
        described.get("group_epoch"),
        len(described.get("members", [])),
    )
    return format_table(("GROUP", "STATE", "GROUP-EPOCH", "#MEMBERS"), [row])


def _format_offsets(described: dict[str, Any]) -> str:
    group = described["group"]
    offsets = described.get("offsets", [])
    if not offsets:
        return f"consumer group {group} has no committed offsets"

    client_ids = {m["member_id"]: m.get("client_id") for m in described.get("members", [])}
    rows = [
        (
            group,
            offset["topic"],
            offset["partition"],
            _cell(offset.get("committed_offset")),
            _cell(offset.get("high_watermark")),
            _cell(offset.get("lag")),
            _cell(offset.get("owner")),
            _cell(client_ids.get(offset.get("owner"))),
        )
        for offset in sorted(offsets, key=lambda o: (str(o["topic"]), int(o["partition"])))
    ]
    headers = (
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
        "CONSUMER-ID", "CLIENT-ID",
    )  # fmt: skip
    return format_table(headers, rows)


def _format_members(described: dict[str, Any]) -> str:
    group = described["group"]
    members = described.get("members", [])
    if not members:
        return f"consumer group {group} has no active members"

    rows = [
        (
            group,
            member["member_id"],
            _cell(member.get("group_instance_id")),
            _cell(member.get("client_id")),
            member.get("member_epoch"),
            _partition_count(member.get("assignment", [])),
            _format_partitions(member.get("assignment", [])),
            _format_partitions(member.get("revoking", [])),
            _cell(member.get("last_heartbeat_ms_ago")),
        )
        for member in sorted(members, key=lambda m: str(m["member_id"]))
    ]
    headers = (
        "GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "CLIENT-ID", "MEMBER-EPOCH",
        "#PARTITIONS", "ASSIGNMENT", "REVOKING", "LAST-HEARTBEAT-MS-AGO",
    )  # fmt: skip
    return format_table(headers, rows)


def format_reset_plan(plan: dict[str, Any]) -> str:
    """Return a GROUP / TOPIC / PARTITION / CURRENT-OFFSET / NEW-OFFSET table."""
    rows = [
        (
            plan["group"],
            entry["topic"],
            entry["partition"],
            _cell(entry.get("current_offset")),
            entry["new_offset"],
        )
        for entry in sorted(plan.get("offsets", []), key=lambda e: int(e["partition"]))
    ]
    return format_table(("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"), rows)
