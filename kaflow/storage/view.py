"""The published view of a partition log: what readers capture and writers replace.

Readers capture a :class:`LogView` with one short lock hold, read the
segments without the lock, and then ask whether the generation changed in
the meantime. Writers replace the view, or a segment's state, under the same
lock. Truncation and segment deletion bump the generation, because they
change or remove bytes that a captured view may still point at. Appends do
not, because they only add bytes past the published end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kaflow.storage.segment import Segment, SegmentState

__all__ = ["LogView", "PublishedView"]


@dataclass(frozen=True, slots=True)
class LogView:
    """The segments of a log in offset order, its log start offset and its generation."""

    segments: tuple[Segment, ...]
    log_start_offset: int
    generation: int

    @property
    def active(self) -> Segment:
        return self.segments[-1]


class PublishedView:
    """The current :class:`LogView` of one log, guarded by a lock."""

    def __init__(self, view: LogView) -> None:
        # Reentrant, so a writer holding exclusive() can still call replace().
        self._lock = threading.RLock()
        self._view = view

    def get(self) -> LogView:
        with self._lock:
            return self._view

    def replace(self, view: LogView) -> None:
        with self._lock:
            self._view = view

    def publish_state(self, segment: Segment, state: SegmentState) -> None:
        """Make ``state`` visible to readers; call only after its bytes are written."""
        with self._lock:
            segment.state = state

    def changed_since(self, view: LogView) -> bool:
        """Return True if a truncation or deletion happened after ``view`` was captured."""
        with self._lock:
            return self._view.generation != view.generation

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off readers while files change in place, as truncation does."""
        with self._lock:
            yield
