"""`kaflow topic`: create, list, describe, alter and delete topics."""

from __future__ import annotations

import argparse
from typing import Any

from kaflow.cli.arguments import (
    Handler,
    SubParsers,
    add_client_options,
    add_output_option,
    config_entry,
    make_client,
    positive_int,
)
from kaflow.cli.exit_codes import ExitCode, UsageError
from kaflow.cli.output import format_table, print_json

__all__ = ["format_topic", "format_topic_list", "register"]


def register(subparsers: SubParsers) -> None:
    """Add `topic` and its subcommands to the top-level parser."""
    topic_parser = subparsers.add_parser(
        "topic", help="create, list, describe, alter and delete topics"
    )
    actions = topic_parser.add_subparsers(dest="topic_command", metavar="ACTION", required=True)

    create = _add_action(actions, "create", "create a topic", _run_create)
    create.add_argument("name", help="topic name: letters, digits, '.', '_' and '-'")
    create.add_argument(
        "--partitions",
        type=positive_int,
        default=1,
        metavar="N",
        help="number of partitions (default: 1)",
    )
    create.add_argument(
        "--config",
        type=config_entry,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="topic setting with Kafka's name, for example retention.ms=86400000 (repeatable)",
    )

    _add_action(actions, "list", "list topics with partition and record counts", _run_list)

    describe = _add_action(
        actions, "describe", "show a topic's partitions, offsets and settings", _run_describe
    )
    describe.add_argument("name", help="topic name")

    alter = _add_action(
        actions, "alter", "add partitions or change settings of a topic", _run_alter
    )
    alter.add_argument("name", help="topic name")
    alter.add_argument(
        "--partitions",
        type=positive_int,
        metavar="N",
        help="new partition count; it can only grow",
    )
    alter.add_argument(
        "--config",
        type=config_entry,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a topic setting (repeatable)",
    )
    alter.add_argument(
        "--delete-config",
        action="append",
        default=[],
        metavar="KEY",
        help="reset a topic setting to its default (repeatable)",
    )

    delete = _add_action(actions, "delete", "delete a topic and all its records", _run_delete)
    delete.add_argument("name", help="topic name")


def _add_action(
    actions: SubParsers, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text)
    add_client_options(parser, top_level=False)
    add_output_option(parser, "a human-readable table")
    parser.set_defaults(handler=handler)
    return parser


def _run_create(args: argparse.Namespace) -> int:
    config = _config_from_entries(args.config)
    topic = make_client(args).create_topic(args.name, args.partitions, config)
    _print_topic(topic, args.output)
    return ExitCode.OK


def _run_list(args: argparse.Namespace) -> int:
    topics = make_client(args).list_topics()
    if args.output == "json":
        print_json({"topics": topics})
    else:
        print(format_topic_list(topics))
    return ExitCode.OK


def _run_describe(args: argparse.Namespace) -> int:
    _print_topic(make_client(args).describe_topic(args.name), args.output)
    return ExitCode.OK


def _run_alter(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = _config_from_entries(args.config)
    for key in args.delete_config:
        if key in changes:
            raise UsageError(f"config key {key!r} is given to both --config and --delete-config")
        changes[key] = None
    if args.partitions is None and not changes:
        raise UsageError("nothing to alter: give --partitions, --config or --delete-config")

    topic = make_client(args).alter_topic(args.name, args.partitions, changes)
    _print_topic(topic, args.output)
    return ExitCode.OK


def _run_delete(args: argparse.Namespace) -> int:
    make_client(args).delete_topic(args.name)
    if args.output == "json":
        print_json({"deleted": args.name})
    else:
        print(f"deleted topic {args.name}")
    return ExitCode.OK


def _config_from_entries(entries: list[tuple[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in entries:
        if key in config:
            raise UsageError(f"config key {key!r} is given more than once")
        config[key] = value
    return config


def _print_topic(topic: dict[str, Any], output: str) -> None:
    if output == "json":
        print_json(topic)
    else:
        print(format_topic(topic))


def _record_count(partition: dict[str, Any]) -> int:
    """Return the offsets between the log start offset and the high watermark."""
    return int(partition["high_watermark"]) - int(partition["log_start_offset"])


def format_topic_list(topics: list[dict[str, Any]]) -> str:
    """Return a NAME / PARTITIONS / RECORDS table, sorted by name."""
    rows = [
        (
            topic["name"],
            len(topic["partitions"]),
            sum(_record_count(partition) for partition in topic["partitions"]),
        )
        for topic in sorted(topics, key=lambda topic: str(topic["name"]))
    ]
    return format_table(("NAME", "PARTITIONS", "RECORDS"), rows)


def format_topic(topic: dict[str, Any]) -> str:
    """Return a topic's name, a table of its partitions and a table of its settings."""
    partitions = sorted(topic["partitions"], key=lambda partition: int(partition["partition"]))
    partition_rows = [
        (
            partition["partition"],
            partition["log_start_offset"],
            partition["high_watermark"],
            _record_count(partition),
        )
        for partition in partitions
    ]
    config_rows = sorted(
        (key, _format_config_value(value)) for key, value in topic["config"].items()
    )
    return "\n".join(
        [
            f"topic: {topic['name']}",
            f"partitions: {len(partitions)}",
            "",
            format_table(
                ("PARTITION", "LOG_START_OFFSET", "HIGH_WATERMARK", "RECORDS"), partition_rows
            ),
            "",
            format_table(("CONFIG", "VALUE"), config_rows),
        ]
    )


def _format_config_value(value: Any) -> str:
    return "null" if value is None else str(value)
