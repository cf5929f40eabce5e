"""Kaflow: a lightweight, Kafka-inspired message broker.

Topics are split into partitions, each an append-only log on disk; every
write is a Raft command replicated through PySyncObj before it is
acknowledged.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kaflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
