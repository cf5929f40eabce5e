"""Run the real `kaflow` entry point as a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

KAFLOW = (sys.executable, "-m", "kaflow")
RUN_TIMEOUT_S = 60.0


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without KAFLOW_* variables, plus ``overrides``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAFLOW_")}
    env.update(overrides or {})
    return env


def run_kaflow(
    *args: str,
    bootstrap: str | None = None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m kaflow [--bootstrap URL] ARGS` to completion and capture its output."""
    command = [*KAFLOW]
    if bootstrap is not None:
        command += ["--bootstrap", bootstrap]
    command += args
    return subprocess.run(
        command,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=clean_env(env),
        timeout=timeout,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[bytes]) -> str:
    """Format a finished run for assertion messages."""
    return (
        f"exit status {result.returncode}\n"
        f"stdout: {result.stdout.decode(errors='replace')}\n"
        f"stderr: {result.stderr.decode(errors='replace')}"
    )
