"""The `kaflow` command: `serve`, `topic`, `produce` and `consume`.

Exit statuses are listed in :mod:`kaflow.cli.exit_codes` and docs/cli.md.
"""

from __future__ import annotations

from kaflow.cli.main import main

__all__ = ["main"]
