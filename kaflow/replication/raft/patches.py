"""Corrections to PySyncObj 0.3.17, applied at run time because its source is not ours.

Every change Kaflow makes to PySyncObj's behaviour lives here, and each one
is named in :data:`PATCHES` so that a test can revert it and show that the
failure it prevents comes back. Line references are to the PyPI release
``pysyncobj-0.3.17``.

- ``pickle_protocol_5``: PySyncObj pickles every command and message with
  protocol 2 (``pickle.py:45``), which stores ``bytes`` as latin-1 text and
  inflates random binary payloads 1.5x at every pickling layer. Protocol 5
  stores them as they are. Every member must run this patch, because a
  protocol 2 reader cannot load protocol 5.
- ``tcp_send_rearm``: ``TcpConnection.send`` (``tcp_connection.py:141-149``)
  writes what the socket takes and keeps the rest in a buffer, but only the
  poller's write event drains that buffer, and the connection stops asking
  for write events once a drain empties it (``:204-211``). A message larger
  than the socket buffer then moves one buffer's worth per later ``send()``
  and never completes if nothing else is sent. The patch subscribes to write
  events whenever output is left pending.
- ``no_next_index_rewind``: the leader streams entries to a follower and
  moves ``nextIndex`` past each batch as it sends it (``syncobj.py:1272``),
  but every acknowledgement sets ``nextIndex`` to the acknowledged position
  (``:1079-1082``), moving it back behind batches already sent. The next
  message then starts before the follower's log end, and the follower
  deletes every entry after ``prevLogIdx`` without checking terms
  (``:991-1004``), including entries it had acknowledged and that may count
  for a commit. Until the leader sends them again, such an entry can exist
  only on the leader. The patch keeps ``nextIndex`` from moving back on a
  successful acknowledgement; a follower that really lacks entries replies
  with a reset, which still moves it back.

:class:`ChunkLabels` corrects a third bug on the sending side, inside the
transport: an entry whose command is at least ``appendEntriesBatchSizeBytes``
is sent in chunks, and the chunk marked ``finish`` is chosen by the raw
command length instead of the pickled length (``syncobj.py:1275-1284``). The
follower then unpickles a truncated buffer and aborts its tick.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pysyncobj
import pysyncobj.pickle
import pysyncobj.syncobj
import pysyncobj.tcp_connection
from pysyncobj.poller import POLL_EVENT_TYPE

from kaflow.errors import InternalError

__all__ = [
    "PATCHES",
    "REQUIRED_PYSYNCOBJ_VERSION",
    "ChunkLabels",
    "Patch",
    "check_pysyncobj_version",
    "install_patches",
    "pickled_size",
]

logger = logging.getLogger(__name__)

REQUIRED_PYSYNCOBJ_VERSION = "0.3.17"

_PICKLE_PROTOCOL = 5
_PICKLE_PROTOCOL_ATTRIBUTE = "__protocol"


def check_pysyncobj_version() -> None:
    """Raise InternalError unless PySyncObj is exactly the release these patches were built on."""
    try:
        installed = importlib.metadata.version("pysyncobj")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    module_version = getattr(getattr(pysyncobj, "version", None), "VERSION", None)
    if installed != REQUIRED_PYSYNCOBJ_VERSION or module_version != REQUIRED_PYSYNCOBJ_VERSION:
        raise InternalError(
            f"PySyncObj {installed or module_version} is installed but Kaflow requires exactly "
            f"{REQUIRED_PYSYNCOBJ_VERSION}, whose internals the Raft adapter relies on; "
            f"install pysyncobj=={REQUIRED_PYSYNCOBJ_VERSION}",
            installed=installed,
            required=REQUIRED_PYSYNCOBJ_VERSION,
        )


@dataclass(frozen=True, slots=True)
class Patch:
    """One named change to PySyncObj with the functions that make and undo it."""

    name: str
    apply: Callable[[], None]
    revert: Callable[[], None]


def _apply_pickle_protocol_5() -> None:
    setattr(pysyncobj.pickle, _PICKLE_PROTOCOL_ATTRIBUTE, _PICKLE_PROTOCOL)


def _revert_pickle_protocol_5() -> None:
    setattr(pysyncobj.pickle, _PICKLE_PROTOCOL_ATTRIBUTE, 2)


_ORIGINAL_TCP_SEND: Callable[[Any, Any], None] = pysyncobj.tcp_connection.TcpConnection.send
_REARM_EVENTS = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR


def _send_and_rearm(connection: Any, message: Any) -> None:
    _ORIGINAL_TCP_SEND(connection, message)
    fileno = connection.fileno()
    if fileno is not None and connection.getSendBufferSize() > 0:
        # The poller calls the connection back when the socket can take more, and the
        # connection drops the write subscription itself once the buffer is empty.
        poller = connection._TcpConnection__poller
        poller.subscribe(fileno, connection._TcpConnection__processConnection, _REARM_EVENTS)


def _apply_tcp_send_rearm() -> None:
    pysyncobj.tcp_connection.TcpConnection.send = _send_and_rearm


def _revert_tcp_send_rearm() -> None:
    pysyncobj.tcp_connection.TcpConnection.send = _ORIGINAL_TCP_SEND


_SYNCOBJ_CLASS: Any = pysyncobj.syncobj.SyncObj
_ORIGINAL_ON_MESSAGE: Callable[[Any, Any, Any], None] = _SYNCOBJ_CLASS._SyncObj__onMessageReceived


def _on_message_without_rewind(syncobj: Any, node: Any, message: Any) -> None:
    if not (
        isinstance(message, dict)
        and message.get("type") == "next_node_idx"
        and message.get("success")
        and not message.get("reset")
    ):
        _ORIGINAL_ON_MESSAGE(syncobj, node, message)
        return
    next_index: dict[Any, int] = syncobj._SyncObj__raftNextIndex
    before = next_index.get(node)
    _ORIGINAL_ON_MESSAGE(syncobj, node, message)
    after = next_index.get(node)
    if before is not None and after is not None and after < before:
        next_index[node] = before


def _apply_no_next_index_rewind() -> None:
    # SyncObj binds the handler when it is constructed (syncobj.py:213), so
    # this takes effect for instances created after install_patches().
    _SYNCOBJ_CLASS._SyncObj__onMessageReceived = _on_message_without_rewind


def _revert_no_next_index_rewind() -> None:
    _SYNCOBJ_CLASS._SyncObj__onMessageReceived = _ORIGINAL_ON_MESSAGE


PATCHES: tuple[Patch, ...] = (
    Patch("pickle_protocol_5", _apply_pickle_protocol_5, _revert_pickle_protocol_5),
    Patch("tcp_send_rearm", _apply_tcp_send_rearm, _revert_tcp_send_rearm),
    Patch("no_next_index_rewind", _apply_no_next_index_rewind, _revert_no_next_index_rewind),
)

_INSTALL_LOCK = threading.Lock()
_installed = False


def install_patches() -> None:
    """Check the PySyncObj release and apply every patch; later calls do nothing."""
    global _installed
    check_pysyncobj_version()
    with _INSTALL_LOCK:
        if _installed:
            return
        for patch in PATCHES:
            patch.apply()
        _installed = True
    logger.debug("pysyncobj patches installed names=%s", ",".join(p.name for p in PATCHES))


def pickled_size(value: Any) -> int:
    """Return the length of ``value`` as PySyncObj pickles it, with the protocol now in force."""
    return len(pysyncobj.pickle.dumps(value))


class ChunkLabels:
    """Corrects the ``transmission`` label of the chunks of one large entry per peer.

    PySyncObj labels a chunk ``finish`` once its offset plus the batch size
    reaches the raw command length, which is shorter than the pickled entry
    being cut, so the follower sees ``finish`` too early. This class counts
    the bytes of the pickled entry still to come and labels the chunk that
    completes it ``finish`` and the others ``process``. ``entry_at`` returns
    the log entry with a given Raft index.
    """

    def __init__(self, entry_at: Callable[[int], tuple[bytes, int, int] | None]) -> None:
        self._entry_at = entry_at
        # Peer -> bytes of the pickled entry not yet sent.
        self._remaining: dict[Any, int] = {}
        self.corrected = 0

    def relabel(self, node: Any, message: dict[str, Any]) -> dict[str, Any]:
        """Return ``message`` with its transmission label fixed; other messages pass unchanged."""
        transmission = message.get("transmission")
        if transmission is None or message.get("type") != "append_entries":
            return message
        data = message["data"]

        if transmission == "start":
            entry = self._entry_at(message["prevLogIdx"] + 1)
            if entry is None:
                self._remaining.pop(node, None)
                return message
            self._remaining[node] = pickled_size(entry) - len(data)
            return message

        remaining = self._remaining.get(node)
        if remaining is None:
            return message
        remaining -= len(data)
        label = "finish" if remaining <= 0 else "process"
        if label == "finish":
            del self._remaining[node]
        else:
            self._remaining[node] = remaining
        if label == transmission:
            return message
        self.corrected += 1
        return {**message, "transmission": label}
