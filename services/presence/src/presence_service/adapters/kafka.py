"""Publishes stored outbox records to Kafka (raw bytes: the record is the CloudEvent JSON)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from inbox_kit.kafka import CLOUDEVENTS_CONTENT_TYPE

from presence_service.service_layer.ports import OutboxRecord


class KafkaEventPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, record: OutboxRecord) -> None:
        await self._broker.publish(
            record.payload,
            topic=record.topic,
            key=record.kafka_key,
            headers={
                "content-type": CLOUDEVENTS_CONTENT_TYPE,
                "ce_type": record.event_type,
                "ce_id": record.event_id,
            },
        )
