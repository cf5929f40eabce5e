"""Prometheus metrics of a node: request and record counters, and gauges read at scrape time."""

from kaflow.observability.node_metrics import REQUEST_DURATION_BUCKETS, NodeMetrics

__all__ = ["REQUEST_DURATION_BUCKETS", "NodeMetrics"]
