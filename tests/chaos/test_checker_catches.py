"""The checker catches a build that acknowledges records before they are durable.

Each test runs the ``power-loss`` scenario (three real nodes on lossy FUSE
mounts, one power cut under load) as ``python -m chaos run``. The broken build
is a copy of ``kaflow/`` whose Raft journal stops fsyncing after its first
entries, so a power cut loses entries that were acknowledged. The checker must
fail that run with lost acknowledged records, and pass the same scenario on
the real build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DURATION_S = "15"
RUN_TIMEOUT_S = 300
# Entries up to this Raft index are still fsynced, so the topic and the producer ids
# survive the power cut and the records after them are what gets lost.
DURABLE_ENTRIES = 30
BROKEN_MARKER = "self-test build: journal fsync stops after start-up"


def _fuse_missing() -> str | None:
    if os.geteuid() != 0:
        return "the power-loss scenario mounts FUSE filesystems and needs root"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import mfusepy  # type: ignore[import-untyped]  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy or libfuse3 is missing ({exc}); run chaos/install-deps.sh"
    return None


pytestmark = pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    # A failure here means the journal changed and the breakage needs updating.
    assert text.count(old) == 1, f"{path} no longer contains the code to break: {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _broken_build(root: Path) -> Path:
    """Copy kaflow/ under ``root`` and make its journal skip fsync after the first entries."""
    shutil.copytree(
        REPO_ROOT / "kaflow", root / "kaflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    journal = root / "kaflow" / "replication" / "journal.py"
    _replace_once(
        journal,
        '        """\n        with self._mutation():\n            self._sync()\n',
        '        """\n'
        f"        if self._last_index > {DURABLE_ENTRIES}:\n"
        "            return\n"
        "        with self._mutation():\n"
        "            self._sync()\n",
    )
    # The once-a-second commit index store syncs the records first, so it goes too.
    _replace_once(
        journal,
        "        if self._failure is not None:\n            return\n        if self._space",
        f"        if self._failure is not None or self._last_index > {DURABLE_ENTRIES}:\n"
        "            return\n"
        "        if self._space",
    )
    _replace_once(
        journal, '"opened Raft journal path=%s', f'"opened Raft journal ({BROKEN_MARKER}) path=%s'
    )
    return root


def _run_power_loss(
    out_dir: Path, seed: int, kaflow_source: Path | None
) -> tuple[int, dict[str, Any]]:
    command = [
        sys.executable,
        "-m",
        "chaos",
        "run",
        "--scenario",
        "power-loss",
        "--duration",
        DURATION_S,
        "--seed",
        str(seed),
        "--out",
        str(out_dir),
    ]
    if kaflow_source is not None:
        command += ["--kaflow-source", str(kaflow_source)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # Run outside the repository: `python -m kaflow` puts the working directory first on
    # sys.path, where the real kaflow/ would shadow the broken copy.
    completed = subprocess.run(
        command,
        cwd=out_dir.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    result_path = out_dir / "result.json"
    assert result_path.exists(), f"no result.json; stdout tail: {completed.stdout[-2000:]}"
    return completed.returncode, json.loads(result_path.read_text(encoding="utf-8"))


def _violation_counts(result: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for violation in result["check"]["violations"]:
        counts[violation["kind"]] = counts.get(violation["kind"], 0) + violation["count"]
    return counts


def test_checker_fails_build_without_journal_fsync(tmp_path: Path) -> None:
    source = _broken_build(tmp_path / "broken")
    out_dir = tmp_path / "run-broken"

    returncode, result = _run_power_loss(out_dir, seed=7, kaflow_source=source)

    node_logs = "".join(path.read_text() for path in (out_dir / "logs").glob("n*.log"))
    assert BROKEN_MARKER in node_logs, "the nodes did not run the broken copy"
    assert returncode != 0
    assert result["status"] == "failed", result["errors"]
    violations = _violation_counts(result)
    assert violations.get("lost_ack", 0) + violations.get("duplicate", 0) > 0, violations


def test_checker_passes_real_build(tmp_path: Path) -> None:
    out_dir = tmp_path / "run-real"

    returncode, result = _run_power_loss(out_dir, seed=7, kaflow_source=None)

    assert result["status"] == "passed", (result["errors"], _violation_counts(result))
    assert returncode == 0
    assert result["check"]["stats"]["acked"] > 0
