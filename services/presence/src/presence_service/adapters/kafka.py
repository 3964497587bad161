"""Publishes stored outbox records (raw bytes: the record is the CloudEvent JSON) and the
progress marks to Kafka, through the process's one producer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from inbox_contracts import CloudEvent
from inbox_contracts.events import PresenceProgressed
from inbox_contracts.topics import PRESENCE
from inbox_kit.kafka import EventPublisher

from presence_service.service_layer.ports import OutboxRecord

SOURCE = "/inbox/presence"


class KafkaEventPublisher:
    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish(self, record: OutboxRecord) -> None:
        await self._publisher.publish_serialized(
            record.topic,
            record.payload,
            key=record.kafka_key,
            event_type=record.event_type,
            event_id=record.event_id,
        )


class KafkaProgressPublisher:
    """One ``PresenceProgressed`` per partition of the presence topic, on that partition
    (key = the partition number as text)."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher
        self._partitions: int | None = None

    async def publish_marks(self, watermark: datetime) -> None:
        if self._partitions is None:
            self._partitions = await self._publisher.partitions(PRESENCE.name)
        # one call for every partition: the records reach the producer together (one
        # produce request a round, no task per partition)
        await self._publisher.publish_many(
            PRESENCE,
            [
                CloudEvent.wrap(PresenceProgressed.at(partition, watermark), source=SOURCE)
                for partition in range(self._partitions)
            ],
            partition_of=_mark_partition,
        )


def _mark_partition(event: CloudEvent[Any]) -> int:
    mark = event.data
    assert isinstance(mark, PresenceProgressed)
    return mark.partition
