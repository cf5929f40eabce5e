"""Entry point of the `kaflow` command: run a subcommand and map its errors to exit statuses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from kaflow.cli.exit_codes import ExitCode, NodeUnreachableError, UsageError
from kaflow.cli.logging_setup import configure_logging
from kaflow.cli.parser import build_parser
from kaflow.errors import KaflowError

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `kaflow` with ``argv`` (default: sys.argv[1:]) and return the exit status.

    Usage errors that argparse detects raise SystemExit(2) from inside
    argparse, after it printed the usage line. Usage errors found later print
    the same way and return 2.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # The innermost subcommand's parser, so its usage line is the one printed.
    usage_parser: argparse.ArgumentParser = getattr(args, "usage_parser", parser)
    if unknown:
        usage_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command != "serve":
        configure_logging("WARNING", "text")

    try:
        status: int = args.handler(args)
        return status
    except UsageError as exc:
        usage_parser.print_usage(sys.stderr)
        print(f"{usage_parser.prog}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except KaflowError as exc:
        code = exc.details.get("code", exc.code) if type(exc) is KaflowError else exc.code
        print(f"error: {code}: {exc.message}", file=sys.stderr)
        return ExitCode.BROKER_ERROR
    except NodeUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.NODE_UNREACHABLE
    except BrokenPipeError:
        # The reader of stdout went away (for example `| head`); stop quietly.
        _silence_stdout()
        return ExitCode.OK
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
