"""Publishes stored outbox records to Kafka (raw bytes: the record is the CloudEvent JSON)."""

from __future__ import annotations

from inbox_kit.kafka import EventPublisher

from presence_service.service_layer.ports import OutboxRecord


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
