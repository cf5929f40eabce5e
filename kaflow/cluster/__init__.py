"""Cluster membership: the member registry, membership changes, routing and local clusters.

Modules here import nothing from kaflow.node at import time, because the
replicated state (kaflow.replication.state) imports the registry codec.
"""
