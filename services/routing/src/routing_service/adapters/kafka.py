"""Kafka adapters: the decision/command publisher (aiokafka, idempotent, acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from inbox_contracts import CloudEvent
from inbox_contracts.events import (
    AgentSweepRequested,
    AssignmentProposed,
    AutoUnassignReason,
    ConversationAutoAssigned,
    ConversationAutoUnassigned,
)
from inbox_contracts.topics import ROUTING, ROUTING_COMMANDS, ROUTING_DISPATCH, ROUTING_PROPOSALS
from inbox_kit.kafka import cloudevent_headers

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

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        """To the dispatcher, keyed by org: one ordered stream per org."""
        futures = [
            await self.producer.send(
                ROUTING_DISPATCH.name,
                e.to_json_bytes(),
                key=e.data.org_id.encode(),
                headers=_headers(e),
            )
            for e in events
        ]
        await asyncio.gather(*futures)

    async def publish_auto_assigned(
        self, events: Sequence[CloudEvent[ConversationAutoAssigned]]
    ) -> None:
        futures = [
            await self.producer.send(
                ROUTING.name, e.to_json_bytes(), key=e.key, headers=_headers(e)
            )
            for e in events
        ]
        await asyncio.gather(*futures)

    async def publish_proposals(self, proposals: Sequence[CloudEvent[AssignmentProposed]]) -> None:
        """To the partition that holds the conversation (whatever partitioner its producers
        used), so its owner reviews it."""
        futures = [
            await self.producer.send(
                ROUTING_PROPOSALS.name,
                p.to_json_bytes(),
                key=p.key,
                partition=p.data.partition,
                headers=_headers(p),
            )
            for p in proposals
        ]
        await asyncio.gather(*futures)

    async def publish_commands(self, commands: Sequence[CloudEvent[AgentSweepRequested]]) -> None:
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
