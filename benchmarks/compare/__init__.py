"""Side-by-side benchmark of a 3-node Kaflow cluster, NATS JetStream R3 and Redis Streams.

``python -m benchmarks.compare`` starts each system fresh on 127.0.0.1, runs
the same workloads against it with its standard Python client in a child
process, repeats, and writes medians and ratios to docs/benchmarks.md.
Servers keep their data, logs and pidfiles under ``/tmp/kaflow-bench-<run>/``
and are stopped by the PIDs this harness started, never by name.
"""
