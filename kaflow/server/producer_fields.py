"""The idempotent producer fields of HTTP request bodies.

A produce body may carry, next to ``records``::

    "producer_id": 7,                       integer 0..2**63-1
    "producer_epoch": 0,                    integer 0..32767
    "base_sequences": {"0": 12, "3": 0}     partition -> sequence of its first record

``base_sequences`` keys are partition numbers written in decimal as strings,
in msgpack bodies too, because the msgpack decoder accepts only string map
keys. The three fields come together or not at all. Whether they fit the
records (every record names its partition, one sequence per partition) is
checked by the node.
"""

from __future__ import annotations

from typing import Any, Final

from kaflow.broker import ProducerSequences
from kaflow.errors import MalformedBodyError
from kaflow.replication.producers import MAX_PRODUCER_EPOCH, SEQUENCE_MODULUS
from kaflow.server.fields import INT32_MAX, INT64_MAX, Fields, describe_value, shorten

__all__ = ["PRODUCE_PRODUCER_FIELDS", "parse_producer_id", "parse_producer_sequences"]

PRODUCE_PRODUCER_FIELDS: Final = frozenset({"producer_id", "producer_epoch", "base_sequences"})


def parse_producer_sequences(fields: Fields) -> ProducerSequences | None:
    """Read the producer fields of a produce body; None when it has none of them.

    Raises MalformedBodyError when only some are present, or for a wrong
    type or range.
    """
    present = sorted(name for name in PRODUCE_PRODUCER_FIELDS if fields.obj.get(name) is not None)
    if not present:
        return None
    if len(present) != len(PRODUCE_PRODUCER_FIELDS):
        missing = sorted(PRODUCE_PRODUCER_FIELDS - set(present))
        raise MalformedBodyError(
            f"an idempotent produce body needs producer_id, producer_epoch and "
            f"base_sequences together; {', '.join(missing)} missing",
            field=missing[0],
            missing=missing,
        )

    producer_id = fields.required_int("producer_id", 0, INT64_MAX)
    producer_epoch = fields.required_int("producer_epoch", 0, MAX_PRODUCER_EPOCH)
    raw_sequences = fields.optional_object("base_sequences")
    if not raw_sequences:
        raise MalformedBodyError(
            "base_sequences is empty; give the base sequence of every partition the records go to",
            field="base_sequences",
        )
    sequences = {
        _parse_partition_key(key): _parse_sequence(key, value)
        for key, value in raw_sequences.items()
    }
    return ProducerSequences(producer_id, producer_epoch, sequences)


def parse_producer_id(fields: Fields) -> int | None:
    """Read the optional ``producer_id`` of a ``POST /v1/producers`` body."""
    fields.reject_unknown({"producer_id"})
    return fields.optional_int("producer_id", None, 0, INT64_MAX)


def _parse_partition_key(key: Any) -> int:
    # Only the canonical decimal form, so "1" and "01" cannot name one partition twice.
    if not (
        isinstance(key, str)
        and key.isascii()
        and key.isdigit()
        and str(int(key)) == key
        and int(key) <= INT32_MAX
    ):
        text = shorten(key) if isinstance(key, str) else describe_value(key)
        raise MalformedBodyError(
            f"base_sequences key {text!r} is not a partition number; keys are strings "
            f"holding a partition in decimal without leading zeros, 0..{INT32_MAX}",
            field=f"base_sequences.{text}",
        )
    return int(key)


def _parse_sequence(key: str, value: Any) -> int:
    maximum = SEQUENCE_MODULUS - 1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise MalformedBodyError(
            f"base_sequences.{key} must be an integer in 0..{maximum}, got {describe_value(value)}",
            field=f"base_sequences.{key}",
            expected=f"an integer in 0..{maximum}",
        )
    return value
