"""Python client library for Kaflow's HTTP API.

``AsyncAdmin``, ``AsyncProducer`` and ``AsyncConsumer`` run on asyncio;
``Admin``, ``Producer`` and ``Consumer`` are their blocking twins for plain
threads. Usage is in docs/client.md.
"""

from kaflow.client.admin import AsyncAdmin
from kaflow.client.consumer import AsyncConsumer
from kaflow.client.errors import (
    ClientClosedError,
    ClientError,
    CommitFailedError,
    IllegalStateError,
    NodeUnreachableError,
    NoOffsetForPartitionError,
)
from kaflow.client.group_admin import (
    GroupDescription,
    GroupListing,
    GroupMember,
    GroupOffset,
    GroupState,
    OffsetReset,
    OffsetResetPlan,
    OffsetResetStrategy,
)
from kaflow.client.membership import ConsumerGroupMetadata, MemberState
from kaflow.client.producer import AsyncProducer
from kaflow.client.rebalance import ConsumerRebalanceListener
from kaflow.client.records import (
    ConsumerRecord,
    Header,
    OffsetAndTimestamp,
    RecordMetadata,
    TopicPartition,
)
from kaflow.client.sync import Admin, Consumer, Producer

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncConsumer",
    "AsyncProducer",
    "ClientClosedError",
    "ClientError",
    "CommitFailedError",
    "Consumer",
    "ConsumerGroupMetadata",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "GroupOffset",
    "GroupState",
    "Header",
    "IllegalStateError",
    "MemberState",
    "NoOffsetForPartitionError",
    "NodeUnreachableError",
    "OffsetAndTimestamp",
    "OffsetReset",
    "OffsetResetPlan",
    "OffsetResetStrategy",
    "Producer",
    "RecordMetadata",
    "TopicPartition",
]
