"""Publishes stored outbox records (raw bytes: the record is the CloudEvent JSON) and the
progress marks to Kafka."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from inbox_contracts import CloudEvent
from inbox_contracts.events import PresenceProgressed
from inbox_contracts.events.presence import PROGRESS_ORG_ID
from inbox_contracts.topics import PRESENCE
from inbox_kit.kafka import CLOUDEVENTS_CONTENT_TYPE, cloudevent_headers

from presence_service.service_layer.ports import OutboxRecord

SOURCE = "/inbox/presence"


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


class KafkaProgressPublisher:
    """One ``PresenceProgressed`` per partition of the presence topic, on that partition
    (key = the partition number as text). Its own producer: it needs the partition count,
    and marks must not queue behind the event relay."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, client_id="presence-progress", linger_ms=0
        )
        self._partitions: list[int] | None = None

    async def _ensure_started(self) -> list[int]:
        if self._partitions is None:
            await self._producer.start()
            self._partitions = sorted(await self._producer.partitions_for(PRESENCE.name))
        return self._partitions

    async def publish_marks(self, watermark: datetime) -> None:
        partitions = await self._ensure_started()
        sends = []
        for partition in partitions:
            event = CloudEvent.wrap(
                PresenceProgressed(
                    org_id=PROGRESS_ORG_ID,
                    partition_key=str(partition),
                    partition=partition,
                    watermark=watermark,
                    occurred_at=watermark,
                ),
                source=SOURCE,
            )
            headers = [(k, v.encode()) for k, v in cloudevent_headers(event).items()]
            sends.append(
                await self._producer.send(
                    PRESENCE.name,
                    event.to_json_bytes(),
                    key=event.key,
                    partition=partition,
                    headers=headers,
                )
            )
        await asyncio.gather(*sends)

    async def stop(self) -> None:
        if self._partitions is not None:
            await self._producer.stop()
