"""Errors that the client raises on its own, without a response from a node.

::

    ClientError
    ├── ClientClosedError           the client was closed by its owner
    ├── NodeUnreachableError        no node responded before the retry timeout
    ├── NoOffsetForPartitionError   no position and auto_offset_reset="error"
    ├── CommitFailedError           a group member's commit was rejected for good
    └── IllegalStateError           a call that the consumer's state does not allow

These errors never travel on the wire, so they stay outside the
:class:`kaflow.errors.KaflowError` tree, whose classes each own a wire code.
Errors that a node returns are raised as their ``kaflow.errors`` class.
"""

from __future__ import annotations

__all__ = [
    "ClientClosedError",
    "ClientError",
    "CommitFailedError",
    "IllegalStateError",
    "NoOffsetForPartitionError",
    "NodeUnreachableError",
]


class ClientError(Exception):
    """Base class of errors the client raises without a node's response."""


class ClientClosedError(ClientError):
    """The client was closed by its owner before or during the call."""


class NodeUnreachableError(ClientError):
    """No node accepted a connection or responded in time.

    ``urls`` lists the nodes the client tried, in the order it tried them.
    """

    def __init__(self, message: str, urls: list[str]) -> None:
        super().__init__(message)
        self.urls = urls


class NoOffsetForPartitionError(ClientError):
    """A consumer has no position for a partition and ``auto_offset_reset`` is "error"."""

    def __init__(self, message: str, topic: str, partition: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition


class CommitFailedError(ClientError):
    """A group member's offset commit was rejected, and retrying it cannot succeed.

    The member was fenced (its session or rebalance timeout ran out, or it
    left the group), or the partitions moved to another member. The records
    behind these offsets may be processed again by the partitions' new owner.
    ``cause`` is the node's error (``unknown_member`` or ``stale_generation``)
    when there was one.
    """

    def __init__(self, message: str, cause: Exception | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class IllegalStateError(ClientError):
    """A call that the consumer's state does not allow, such as assign() after subscribe()."""
