"""Chaos suite: runs a real Kaflow cluster under load, injects faults and checks the result.

Run it as ``python -m chaos``; docs/chaos.md describes the scenarios.
"""
