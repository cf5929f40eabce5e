"""Replication: the Raft adapter, the replicated commands, the state machine and group commit.

:mod:`kaflow.replication.raft` is the only module in Kaflow that imports
PySyncObj. Commands (:mod:`~kaflow.replication.commands`) are applied in log
order by :class:`~kaflow.replication.state_machine.StateMachine`, and
:class:`~kaflow.replication.proposer.GroupCommitProposer` coalesces
concurrent produce requests into few commands.
"""
