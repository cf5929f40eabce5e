"""Create the benchmark topic on request and read its partition count."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kaflow.client import AsyncAdmin
from kaflow.errors import TopicAlreadyExistsError

__all__ = ["prepare_topic"]

logger = logging.getLogger(__name__)


async def prepare_topic(
    bootstrap: Sequence[str], topic: str, create_partitions: int | None, retry_timeout_ms: int
) -> int:
    """Create ``topic`` when ``create_partitions`` is set, then return its partition count.

    An existing topic is used as it is, with its own partition count.
    Raises UnknownTopicError when the topic does not exist and creation was
    not requested.
    """
    async with AsyncAdmin(bootstrap, retry_timeout_ms=retry_timeout_ms) as admin:
        if create_partitions is not None:
            try:
                await admin.create_topic(topic, partitions=create_partitions)
                logger.info("created topic=%s partitions=%d", topic, create_partitions)
            except TopicAlreadyExistsError:
                logger.info("using existing topic topic=%s", topic)
        described = await admin.describe_topic(topic)
    return len(described["partitions"])
