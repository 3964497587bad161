"""Kafka adapters: the decision/command publisher (the kit's one producer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AgentSweepRequested,
    AutoUnassignReason,
    ConversationAutoUnassigned,
)
from inbox_contracts.topics import ROUTING, ROUTING_COMMANDS
from inbox_kit.kafka import EventPublisher

from routing_service.domain.model import Decision

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

    async def publish_commands(self, commands: Sequence[CloudEvent[AgentSweepRequested]]) -> None:
        await asyncio.gather(
            *(self.publish(ROUTING_COMMANDS, c, partition=c.data.partition) for c in commands)
        )
