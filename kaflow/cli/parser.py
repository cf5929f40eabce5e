"""The argparse parser of the `kaflow` command."""

from __future__ import annotations

import argparse

from kaflow.cli import consume, produce, serve_options, topic
from kaflow.cli.arguments import add_client_options
from kaflow.cli.exit_codes import EXIT_CODES_HELP

__all__ = ["build_parser"]


def _run_serve(args: argparse.Namespace) -> int:
    # Imported here so that client commands do not load aiohttp and the node.
    from kaflow.cli import serve

    return serve.run(args)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for `kaflow` and every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kaflow",
        description="Run a Kaflow node, manage its topics, and produce and consume records.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_options(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve_options.register(subparsers, _run_serve)
    topic.register(subparsers)
    produce.register(subparsers)
    consume.register(subparsers)
    return parser
