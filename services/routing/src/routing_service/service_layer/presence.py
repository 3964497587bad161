"""Routing's presence consumer: records each agent's timeline, then asks for sweeps.

The timeline is written by the owner of the agent's presence partition only (one writer per
agent). A sign-out triggers one ``AgentSweepRequested`` command per partition of the
conversation topics; the owner of each partition re-folds that agent's conversations and takes
the R1 decisions. Commands are derived deterministically (uuid5 of the sign-out id and the
partition), so redelivery republishes the same command ids; handling one twice is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    AgentSweepRequested,
)

from routing_service.service_layer.auto_assign import DispatchPublisher
from routing_service.service_layer.ports import CommandPublisher, RoutingStore
from routing_service.service_layer.translate import presence_entry

COMMAND_NAMESPACE = uuid.UUID("0f4a0f0e-5d0e-4b55-9a8f-2c1f3b8e6d21")
SOURCE = "/inbox/routing"


def sweep_commands(
    event: CloudEvent[EventData], partitions: int
) -> list[CloudEvent[AgentSweepRequested]]:
    d = event.data
    assert isinstance(d, AgentSignedOut)
    return [
        CloudEvent.wrap(
            AgentSweepRequested(
                org_id=d.org_id,
                agent_id=d.agent_id,
                partition=p,
                cause_event_id=event.id,
                cause_event_type=event.type,
                occurred_at=d.occurred_at,
            ),
            source=SOURCE,
            event_id=str(uuid.uuid5(COMMAND_NAMESPACE, f"{event.id}|{p}")),
        )
        for p in range(partitions)
    ]


class PresenceRecorder:
    def __init__(
        self,
        store: RoutingStore,
        commands: CommandPublisher,
        partitions: int,
        dispatch: DispatchPublisher | None = None,
    ) -> None:
        self._store = store
        self._commands = commands
        self._partitions = partitions
        #: automatic assignment: presence re-published to the dispatcher, keyed by org
        self._dispatch = dispatch

    async def handle(self, events: Sequence[CloudEvent[EventData]]) -> int:
        """Record the batch, then publish the sweeps; returns the number of commands."""
        commands: list[CloudEvent[AgentSweepRequested]] = []
        rekeyed: list[CloudEvent[EventData]] = []
        for event in events:
            if isinstance(event.data, (AgentSignedIn, AgentSignedOut, AgentAvailabilityChanged)):
                rekeyed.append(event)
            entry = presence_entry(event)
            if entry is None:
                continue  # availability never removes assignments
            agent_id = event.data.subject
            await self._store.record_presence(event.data.org_id, agent_id, entry)
            if not entry.signed_in:
                commands.extend(sweep_commands(event, self._partitions))
        if commands:
            await self._commands.publish_commands(commands)
        if rekeyed and self._dispatch is not None:
            # after the timeline is stored: an owner never sees a proposal for an agent
            # whose sign-in it does not know yet
            await self._dispatch.publish_dispatch_inputs(rekeyed)
        return len(commands)
