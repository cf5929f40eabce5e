"""Plain-text tables and JSON output for the client commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "print_json", "print_json_line"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return left-aligned columns separated by two spaces, with a header row."""
    cells = [[str(header) for header in headers], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def print_json(value: Any) -> None:
    """Print one JSON document, indented for reading."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_json_line(value: Any) -> None:
    """Write one JSON document as a single UTF-8 line, for streams that tools read line by line.

    The line goes to the binary stdout buffer, which is where `consume
    --output text` writes raw values, so all record output stays in order.
    """
    line = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    sys.stdout.buffer.write(line.encode("utf-8") + b"\n")
