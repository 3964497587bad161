"""Kafka adapters: the decision/command publisher (the kit's one producer), and the
end-offset probe the event-time progress uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
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


def end_offset_probe(loop: BatchConsumer) -> Callable[[str, int], Awaitable[bool]]:
    """Has ``loop``'s consumer handed out every record up to the partition's end offset?

    Compares the position (after the records returned so far) with the high watermark of the
    latest fetch response; no request is made, nothing is awaited. False while unknown (not
    assigned, not fetched, no valid position yet).
    """

    async def caught_up(topic: str, partition: int) -> bool:
        consumer = loop.consumer
        tp = TopicPartition(topic, partition)
        if consumer is None or tp not in consumer.assignment():
            return False
        highwater = consumer.highwater(tp)
        if highwater is None:
            return False
        # the position without awaiting it: ``consumer.position`` waits for a position reset
        # (and leaves a waiting task behind when cancelled); a partition without a valid
        # position yet is simply not caught up
        assignment = consumer._subscription.subscription.assignment
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None or not state.has_valid_position:
            return False
        return bool(state.position >= highwater)

    return caught_up
