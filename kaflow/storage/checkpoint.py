"""The log start offset checkpoint of a partition directory.

The log start offset can sit in the middle of a segment (after a
delete-records request), so it cannot be derived from file names. It is
stored in ``log-start-offset.checkpoint``, a text file of two lines::

    1                 format version
    <log start offset>  decimal

The file is replaced atomically (temporary file, fsync, rename, fsync of the
directory), so a crash leaves either the old or the new value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from kaflow.storage.errors import CorruptLogError
from kaflow.storage.files import FileCache, write_file_atomically
from kaflow.storage.segment import Segment

__all__ = [
    "CHECKPOINT_FILE",
    "clamp_log_start",
    "read_log_start_offset",
    "write_log_start_offset",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "log-start-offset.checkpoint"
_VERSION = "1"
# Longer than any valid checkpoint: a version line and a 19-digit offset.
_MAX_BYTES = 64


def read_log_start_offset(files: FileCache, directory: Path) -> int | None:
    """Return the checkpointed log start offset, or None when there is no checkpoint."""
    path = directory / CHECKPOINT_FILE
    try:
        with files.lease(path) as fd:
            text = os.pread(fd, _MAX_BYTES, 0).decode("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptLogError(
            f"cannot read log start offset checkpoint {path}: {exc}", path=str(path)
        ) from exc

    lines = text.splitlines()
    if len(lines) != 2 or lines[0] != _VERSION or not lines[1].isdigit():
        raise CorruptLogError(
            f"log start offset checkpoint {path} is invalid: expected version {_VERSION} and "
            f"an offset on two lines, got {text[:80]!r}; delete the file to fall back to the "
            "first segment's base offset",
            path=str(path),
        )
    return int(lines[1])


def write_log_start_offset(files: FileCache, directory: Path, offset: int) -> None:
    """Store ``offset`` as the log start offset, durably and atomically."""
    data = f"{_VERSION}\n{offset}\n".encode("ascii")
    write_file_atomically(files, directory / CHECKPOINT_FILE, data)


def clamp_log_start(directory: Path, checkpoint: int | None, segments: Sequence[Segment]) -> int:
    """Return the checkpointed log start offset, limited to the offsets the segments span.

    Without a checkpoint the log starts at the first segment's base offset.
    A checkpoint outside the segments is logged at WARNING and clamped. It
    is left by a crash between emptying the log and writing the new
    checkpoint, or by segment files removed by hand.
    """
    first = segments[0].base_offset
    end = segments[-1].state.next_offset
    if checkpoint is None:
        return first
    if first <= checkpoint <= end:
        return checkpoint
    clamped = min(max(checkpoint, first), end)
    logger.warning(
        "log start offset checkpoint is outside the log log=%s checkpoint=%d "
        "first_base_offset=%d log_end_offset=%d using=%d",
        directory.name,
        checkpoint,
        first,
        end,
        clamped,
    )
    return clamped
