"""The typed adapter around PySyncObj 0.3.17, the only Kaflow package that imports it.

- :mod:`.adapter`: :class:`RaftNode`, one Raft member on top of PySyncObj.
- :mod:`.member`: the ``SyncObj`` subclass and transport that fsync the
  journal before an entry counts as stored.
- :mod:`.patches`: the version check and the corrections to PySyncObj's bugs.
- :mod:`.tuning`: timers and sizes handed to PySyncObj.
- :mod:`.journal_files`: opening the journal, converting the old single-file format.

docs/replication.md states the durability contract and lists the patches.
"""

from kaflow.replication.raft.adapter import RaftNode
from kaflow.replication.raft.journal_files import open_journal
from kaflow.replication.raft.patches import REQUIRED_PYSYNCOBJ_VERSION, check_pysyncobj_version
from kaflow.replication.raft.tuning import RaftTuning
from kaflow.replication.raft_types import RaftSettings, RaftStatus

__all__ = [
    "REQUIRED_PYSYNCOBJ_VERSION",
    "RaftNode",
    "RaftSettings",
    "RaftStatus",
    "RaftTuning",
    "check_pysyncobj_version",
    "open_journal",
]
