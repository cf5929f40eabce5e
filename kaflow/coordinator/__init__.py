"""Consumer group coordination: membership, assignment and reconciliation.

The broker computes each member's assignment (Kafka's consumer protocol of
KIP-848). :mod:`.model` is the replicated group record, :mod:`.assignor` the
sticky, lag-aware assignment strategy, :mod:`.reconcile` the pure heartbeat
and fencing rules, and :mod:`.service` the :class:`GroupCoordinator` that
runs them on the Raft leader. docs/groups.md describes the protocol.

This package's ``__init__`` imports nothing, because kaflow.replication
imports :mod:`.model` and :mod:`.service` imports kaflow.replication.
"""
