"""Kafka adapters: the decision/command publisher (the kit's one producer), and the
completeness probe the event-time progress uses."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AssignmentProposed,
    AutoUnassignReason,
    ConversationAutoAssigned,
    ConversationAutoUnassigned,
)
from inbox_contracts.topics import ROUTING, ROUTING_COMMANDS, ROUTING_DISPATCH, ROUTING_PROPOSALS
from inbox_kit.batch_consumer import BatchConsumer
from inbox_kit.kafka import EventPublisher, cloudevent_headers

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


class KafkaPublisher(EventPublisher):
    """Publishes decisions (keyed by conversation) and sweep commands (explicit partition)."""

    def __init__(self, bootstrap: str, *, client_id: str = "routing") -> None:
        super().__init__(bootstrap, client_id=client_id)

    async def publish_decisions(self, decisions: Sequence[Decision]) -> None:
        await self.publish_many(ROUTING, [decision_event(d) for d in decisions])

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        """To the dispatcher, keyed by org (one ordered stream per org), whatever the event's
        own subject (presence events are re-published unchanged)."""
        futures = [
            await self.producer.send(
                ROUTING_DISPATCH.name,
                e.to_json_bytes(),
                key=e.data.org_id.encode(),
                headers=[(k, v.encode()) for k, v in cloudevent_headers(e.type, e.id).items()],
            )
            for e in events
        ]
        await asyncio.gather(*futures)

    async def publish_auto_assigned(
        self, events: Sequence[CloudEvent[ConversationAutoAssigned]]
    ) -> None:
        await self.publish_many(ROUTING, events)

    async def publish_proposals(self, proposals: Sequence[CloudEvent[AssignmentProposed]]) -> None:
        """To the partition that holds the conversation (whatever partitioner its producers
        used), so its owner reviews it."""
        await asyncio.gather(
            *(self.publish(ROUTING_PROPOSALS, p, partition=p.data.partition) for p in proposals)
        )

    async def publish_commands(self, commands: Sequence[Command]) -> None:
        await asyncio.gather(
            *(self.publish(ROUTING_COMMANDS, c, partition=c.data.partition) for c in commands)
        )


class CompletenessProbe:
    """Up to which wall time has ``loop``'s consumer handed out every record of a partition?

    A fetch response carries the partition's high watermark, and the consumer notes the wall
    time it processed it. With one broker connection the fetcher has one request in flight,
    so the request behind the latest response was sent after the previous response was
    processed; the broker took the high watermark after that. Hence, once the position has
    reached the latest high watermark, every record appended before the previous response's
    processing time has been handed out: that time (as seen by this probe, which is never
    later) is what the partition is complete as of. Stale knowledge (a starved process, a
    slow fetch) yields an old time, never a false "caught up now". No request is made,
    nothing is awaited; None while unknown (not assigned, no position, fewer than two
    responses seen).
    """

    def __init__(self, loop: BatchConsumer) -> None:
        self._loop = loop
        #: partition -> (latest response time seen, the one seen before it), epoch ms
        self._responses: dict[TopicPartition, tuple[int, int | None]] = {}

    async def __call__(self, topic: str, partition: int) -> datetime | None:
        consumer = self._loop.consumer
        tp = TopicPartition(topic, partition)
        if consumer is None or tp not in consumer.assignment():
            return None
        # read without awaiting: ``consumer.position`` waits for a position reset (and leaves
        # a waiting task behind when cancelled); a partition without one is not complete
        assignment = consumer._subscription.subscription.assignment
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None or not state.has_valid_position or state.timestamp is None:
            return None
        latest, before = self._responses.get(tp, (None, None))
        if state.timestamp != latest:
            latest, before = state.timestamp, latest
            self._responses[tp] = (latest, before)
        if before is None or state.highwater is None or state.position < state.highwater:
            return None
        return datetime.fromtimestamp(before / 1000, UTC)
