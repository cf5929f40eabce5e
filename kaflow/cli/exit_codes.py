"""Exit statuses of the ``kaflow`` command and the CLI-only errors that select them.

The statuses are part of the CLI's contract with scripts; docs/cli.md and the
``kaflow --help`` epilog list the same values.
"""

from __future__ import annotations

import enum

__all__ = ["EXIT_CODES_HELP", "ExitCode", "NodeUnreachableError", "UsageError"]


class ExitCode(enum.IntEnum):
    OK = 0
    # The node returned an error, or `kaflow serve` failed to start or stopped abnormally.
    BROKER_ERROR = 1
    # An invalid option, argument, environment variable or input line.
    USAGE_ERROR = 2
    # No connection to the node, or no response within --timeout.
    NODE_UNREACHABLE = 3
    # Ctrl-C outside `consume --follow`, following the shell's 128 + SIGINT convention.
    INTERRUPTED = 130


EXIT_CODES_HELP = """\
exit status:
  0    success
  1    the node returned an error (printed as "error: <code>: <message>"),
       or `kaflow serve` failed to start, stopped after a storage failure
       or was forced to exit by a second signal
  2    usage error: invalid option, argument, environment variable or input
  3    cannot connect to the node, or no response within --timeout
  130  interrupted by Ctrl-C (except `consume --follow`, which exits 0)
"""


class UsageError(Exception):
    """An option, argument, environment variable or input line is invalid.

    These errors are detected by the CLI itself and never come from a node,
    so they are not part of the :class:`kaflow.errors.KaflowError` tree.
    """


class NodeUnreachableError(Exception):
    """The node did not accept a connection or did not respond in time.

    A transport failure on the client side has no wire code, so it stays
    outside the :class:`kaflow.errors.KaflowError` tree that the server renders.
    """

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url
