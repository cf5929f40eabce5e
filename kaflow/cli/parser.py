"""The argparse parser of the `kaflow` command."""

from __future__ import annotations

import argparse
from typing import Any, cast

from kaflow.cli import bench, cluster, consume, group, produce, serve_options, topic
from kaflow.cli.arguments import SubParsers, add_client_options
from kaflow.cli.exit_codes import EXIT_CODES_HELP

__all__ = ["CommandParser", "build_parser"]


class CommandParser(argparse.ArgumentParser):
    """The parser of one subcommand; it stores itself in the parsed arguments.

    ``args.usage_parser`` is then the innermost subcommand that parsed the
    command line (``topic alter``, not ``topic``), so usage errors found after
    parsing print that subcommand's usage line. Subparsers that a
    CommandParser adds are CommandParsers too, because argparse creates them
    with the class of their parent.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(usage_parser=self)


def _run_serve(args: argparse.Namespace) -> int:
    # Imported here so that client commands do not load aiohttp and the node.
    from kaflow.cli import serve

    return serve.run(args)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for `kaflow` and every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kaflow",
        description=(
            "Run a Kaflow node, manage its topics and consumer groups, and produce and "
            "consume records."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_options(parser, top_level=True)
    # The register functions take the base class; they only add parsers and arguments.
    subparsers = cast(
        SubParsers,
        parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
        ),
    )
    serve_options.register(subparsers, _run_serve)
    topic.register(subparsers)
    produce.register(subparsers)
    consume.register(subparsers)
    group.register(subparsers)
    cluster.register(subparsers)
    bench.register(subparsers)
    return parser
