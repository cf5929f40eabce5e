"""Errors raised by the storage engine.

The classes live in :mod:`kaflow.errors` so that every error code is known to
the registry (and to clients that never import storage); this module
re-exports them for storage code.
"""

from __future__ import annotations

from kaflow.errors import CorruptBatchError, CorruptLogError

__all__ = ["CorruptBatchError", "CorruptLogError"]
