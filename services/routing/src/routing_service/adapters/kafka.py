"""Kafka adapters: the decision/command publisher (aiokafka, idempotent, acks=all), and the
end-offset probe the event-time progress uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AutoUnassignReason,
    ConversationAutoUnassigned,
)
from inbox_contracts.topics import ROUTING, ROUTING_COMMANDS
from inbox_kit.batch_consumer import BatchConsumer
from inbox_kit.kafka import cloudevent_headers

from routing_service.domain.model import Decision
from routing_service.service_layer.ports import Command

SOURCE = "/inbox/routing"


def decision_event(d: Decision) -> CloudEvent[ConversationAutoUnassigned]:
    return CloudEvent.wrap(
        ConversationAutoUnassigned(
            org_id=d.org_id,
            conversation_id=d.conversation_id,
            previous_assignee_id=d.previous_assignee_id,
            reason=AutoUnassignReason(d.reason.value),
            cause_event_id=d.cause_event_id,
            cause_event_type=d.cause_event_type,
            occurred_at=d.occurred_at,
        ),
        source=SOURCE,
        event_id=d.decision_id,
    )


def _headers(event: CloudEvent[Any]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in cloudevent_headers(event).items()]


class KafkaPublisher:
    """Publishes decisions (keyed by conversation) and sweep commands (explicit partition)."""

    def __init__(self, bootstrap: str, *, client_id: str = "routing") -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "start() first"
        return self._producer

    async def start(self) -> None:
        # created here: aiokafka objects need the running event loop
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )
        await self._producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish_decisions(self, decisions: Sequence[Decision]) -> None:
        futures = []
        for d in decisions:
            event = decision_event(d)
            futures.append(
                await self.producer.send(
                    ROUTING.name, event.to_json_bytes(), key=event.key, headers=_headers(event)
                )
            )
        await asyncio.gather(*futures)

    async def publish_commands(self, commands: Sequence[Command]) -> None:
        futures = []
        for c in commands:
            futures.append(
                await self.producer.send(
                    ROUTING_COMMANDS.name,
                    c.to_json_bytes(),
                    key=c.key,
                    partition=c.data.partition,
                    headers=_headers(c),
                )
            )
        await asyncio.gather(*futures)


def end_offset_probe(loop: BatchConsumer) -> Callable[[str, int], Awaitable[bool]]:
    """Has ``loop``'s consumer handed out every record up to the partition's end offset?

    Compares the position (after the records returned so far) with the high watermark of the
    latest fetch response; no request is made. False while unknown (not assigned, not fetched).
    """

    async def caught_up(topic: str, partition: int) -> bool:
        consumer = loop.consumer
        tp = TopicPartition(topic, partition)
        if consumer is None or tp not in consumer.assignment():
            return False
        highwater = consumer.highwater(tp)
        if highwater is None:
            return False
        try:
            position = await asyncio.wait_for(consumer.position(tp), 0.05)
        except Exception:
            return False
        return bool(position >= highwater)

    return caught_up
