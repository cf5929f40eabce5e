"""Reading a run's JSON Lines logs back into :class:`~chaos.verdict.RunLogs`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from chaos.verdict import NodeLog, RunLogs

__all__ = ["read_jsonl", "read_run_logs"]

logger = logging.getLogger(__name__)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Return the objects of a JSON Lines file, or [] when the file is missing.

    A last line cut off by a crash of the runner is skipped with a warning.
    An invalid line elsewhere raises ValueError, because the log is then not
    trustworthy.
    """
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                logger.warning("skipped a truncated last line path=%s line=%d", path, number)
                continue
            raise ValueError(f"{path}:{number} is not valid JSON: {exc}") from exc
    return entries


def _read_all(out_dir: Path, pattern: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for path in sorted(out_dir.glob(pattern)):
        entries += read_jsonl(path)
    return entries


def read_run_logs(
    out_dir: Path,
    nodes: dict[str, dict[int, NodeLog]],
    node_errors: dict[str, str],
    load_window: tuple[float, float],
) -> RunLogs:
    """Combine the load's logs in ``out_dir`` with the nodes' records."""
    return RunLogs(
        acks=read_jsonl(out_dir / "acks.jsonl"),
        consumed=_read_all(out_dir, "consumed-*.jsonl"),
        commits=_read_all(out_dir, "commits-*.jsonl"),
        committed=read_jsonl(out_dir / "committed.jsonl"),
        resets=read_jsonl(out_dir / "resets.jsonl"),
        nodes=nodes,
        node_errors=node_errors,
        load_window=load_window,
    )
