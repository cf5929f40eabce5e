"""Argument types and the options shared by every client command."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeAlias

from kaflow.cli.exit_codes import UsageError
from kaflow.cli.http import NodeClient, validate_bootstrap_url
from kaflow.errors import InvalidGroupNameError
from kaflow.groups import validate_group_name

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_TIMEOUT_S",
    "Handler",
    "SubParsers",
    "add_client_options",
    "add_output_option",
    "bootstrap_url",
    "config_entry",
    "group_name",
    "make_client",
    "non_negative_int",
    "port_number",
    "positive_int",
    "positive_seconds",
]

# Types of the object that `add_subparsers()` returns and of a subcommand's handler.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = Callable[[argparse.Namespace], int]

DEFAULT_BOOTSTRAP = "http://127.0.0.1:8092"
DEFAULT_TIMEOUT_S = 30.0


def _parse_int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def positive_int(text: str) -> int:
    value = _parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: must be 1 or more")
    return value


def non_negative_int(text: str) -> int:
    value = _parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {value}: must be 0 or more")
    return value


def port_number(text: str) -> int:
    value = _parse_int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: must be in 0..65535")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {text}: must be more than 0 seconds")
    return value


def bootstrap_url(text: str) -> str:
    """Return the node URL without a trailing slash; see validate_bootstrap_url."""
    try:
        return validate_bootstrap_url(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def group_name(text: str) -> str:
    """Return ``text`` if it is a valid consumer group name, checked as the node checks it."""
    try:
        return validate_group_name(text)
    except InvalidGroupNameError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def config_entry(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; a decimal integer value becomes an int, anything else stays a string."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(
            f"invalid config entry {text!r}: expected key=value, for example retention.ms=86400000"
        )
    try:
        return key, int(value, 10)
    except ValueError:
        return key, value


def add_client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Add --bootstrap and --timeout.

    They are accepted before and after the subcommand. The top-level parser
    sets the defaults, and the subcommand parsers use SUPPRESS so that an
    option given only before the subcommand is not overwritten.
    """
    bootstrap_default: Any = argparse.SUPPRESS
    timeout_default: Any = argparse.SUPPRESS
    if top_level:
        bootstrap_default = os.environ.get("KAFLOW_BOOTSTRAP", DEFAULT_BOOTSTRAP)
        timeout_default = DEFAULT_TIMEOUT_S
    parser.add_argument(
        "--bootstrap",
        metavar="URL",
        type=bootstrap_url,
        default=bootstrap_default,
        help=(
            "HTTP address of the node to talk to "
            f"(default: $KAFLOW_BOOTSTRAP, else {DEFAULT_BOOTSTRAP})"
        ),
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=timeout_default,
        help=(
            "maximum time in seconds to wait for the node to accept a connection and "
            f"respond to each request (default: {DEFAULT_TIMEOUT_S:g})"
        ),
    )


def add_output_option(parser: argparse.ArgumentParser, text_help: str) -> None:
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help=f"output format: text ({text_help}) or json (default: text)",
    )


def make_client(args: argparse.Namespace) -> NodeClient:
    """Build the HTTP client from the --bootstrap and --timeout options."""
    return NodeClient(args.bootstrap, args.timeout)
