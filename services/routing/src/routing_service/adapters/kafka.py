"""Kafka adapters: the decision/command publisher (the kit's one producer), and the
completeness probe the event-time progress uses."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from inbox_contracts import CloudEvent, EncodedEvent
from inbox_contracts.events import (
    AutoUnassignReason,
    ConversationAutoUnassigned,
    PresenceProgressRelayed,
)
from inbox_contracts.topics import ROUTING, ROUTING_COMMANDS, ROUTING_DISPATCH, ROUTING_PROPOSALS
from inbox_kit.batch_consumer import BatchConsumer
from inbox_kit.kafka import EventPublisher

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


def _cause_of_decision(event: CloudEvent[Any]) -> str | None:
    cause = getattr(event.data, "cause_event_id", None)
    return cause if isinstance(cause, str) else None


def _org_key(event: CloudEvent[Any]) -> bytes:
    return str(event.data.org_id).encode()


class KafkaPublisher(EventPublisher):
    """Publishes decisions (keyed by conversation) and sweep commands (explicit partition)."""

    def __init__(self, bootstrap: str, *, client_id: str = "routing") -> None:
        super().__init__(bootstrap, client_id=client_id)

    async def partition_count(self, topic: str) -> int:
        return len(await self.producer.partitions_for(topic))

    async def publish_decisions(self, decisions: Sequence[Decision]) -> None:
        """Each decision's ``send`` span continues the trace of the event that caused it, even
        when it is published later (when event time is final) or after a take-over."""
        await self.publish_many(
            ROUTING, [decision_event(d) for d in decisions], cause_of=_cause_of_decision
        )

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        """To the dispatcher, keyed by org (one ordered stream per org), whatever the event's
        own subject (presence events are re-published unchanged)."""
        await self.publish_many(ROUTING_DISPATCH, events, key_of=_org_key)

    async def publish_auto_assigned(self, events: Sequence[EncodedEvent]) -> None:
        await self.publish_many(ROUTING, events)

    async def publish_dispatch_progress(
        self, events: Sequence[CloudEvent[PresenceProgressRelayed]]
    ) -> None:
        """Presence progress to every partition of the dispatch topic (``data.partition``)."""
        await asyncio.gather(
            *(self.publish(ROUTING_DISPATCH, e, partition=e.data.partition) for e in events)
        )

    async def publish_proposals(self, proposals: Sequence[EncodedEvent]) -> None:
        """To the partition that holds the conversation (whatever partitioner its producers
        used), so its owner reviews it."""
        by_partition: dict[int, list[EncodedEvent]] = {}
        for p in proposals:
            assert p.partition is not None  # encode_proposal names it
            by_partition.setdefault(p.partition, []).append(p)
        # one send-all-then-await per partition, not per proposal
        await asyncio.gather(
            *(
                self.publish_many(ROUTING_PROPOSALS, events, partition=partition)
                for partition, events in by_partition.items()
            )
        )

    async def publish_commands(self, commands: Sequence[Command]) -> None:
        await asyncio.gather(
            *(self.publish(ROUTING_COMMANDS, c, partition=c.data.partition) for c in commands)
        )


def fetch_state(loop: BatchConsumer, tp: TopicPartition) -> Any | None:
    """aiokafka's fetch state of ``tp`` (position, high watermark, time of the latest fetch
    response) in ``loop``'s consumer; None unless assigned there with a valid position.

    Read without awaiting: ``consumer.position`` waits for a position reset (and leaves a
    waiting task behind when cancelled).
    """
    consumer = loop.consumer
    if consumer is None:
        return None
    assignment = consumer._subscription.subscription.assignment
    if assignment is None or tp not in assignment.tps:
        return None
    state = assignment.state_value(tp)
    return state if state.has_valid_position else None


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
        tp = TopicPartition(topic, partition)
        state = fetch_state(self._loop, tp)
        if state is None or state.timestamp is None:
            return None
        latest, before = self._responses.get(tp, (None, None))
        if state.timestamp != latest:
            latest, before = state.timestamp, latest
            self._responses[tp] = (latest, before)
        if before is None or state.highwater is None or state.position < state.highwater:
            return None
        return datetime.fromtimestamp(before / 1000, UTC)
