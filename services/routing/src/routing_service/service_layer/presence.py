"""Routing's presence consumer: records each agent's timeline, asks for sweeps, relays progress.

The timeline is written by the owner of the agent's presence partition only (one writer per
agent). A sign-out triggers one ``AgentSweepRequested`` command per partition of the
conversation topics; the owner of each partition folds that agent's conversations again and
takes the R1 decisions once they are final. Commands are derived deterministically (uuid5 of
the sign-out id and the partition), so redelivery republishes the same command ids; handling
one twice is harmless.

Presence progress marks (``PresenceProgressed``) are noted only after the transitions before
them in the batch are recorded; ``relay`` then tells every owner, through the commands topic,
how far presence is recorded per presence partition (``domain.progress.MarkTracker``, with the
wall-clock fallback for partitions without marks), and the automatic-assignment dispatcher,
through every partition of the dispatch topic (right after a batch with marks: it holds new
waiting conversations until the progress reaches them).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from inbox_contracts import CloudEvent, EventData, utc_now
from inbox_contracts.events import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    AgentSweepRequested,
    PresenceMark,
    PresenceProgressed,
    PresenceProgressRelayed,
)
from inbox_contracts.events.presence import PROGRESS_ORG_ID
from inbox_kit.ids import name_based_id

from routing_service.domain.progress import MarkTracker
from routing_service.service_layer.ports import Command, CommandPublisher, PresenceStore
from routing_service.service_layer.translate import presence_entry

log = logging.getLogger(__name__)
#: Between relays to the dispatcher that no mark triggered (the wall-clock fallback moves the
#: progress at every tick; each relay is one record per dispatch partition).
DISPATCH_FALLBACK_SPACING = timedelta(milliseconds=100)
COMMAND_NAMESPACE = uuid.UUID("0f4a0f0e-5d0e-4b55-9a8f-2c1f3b8e6d21")
SOURCE = "/inbox/routing"


class PresenceForwarder(Protocol):
    """Automatic assignment's share of the presence consumer's output (the dispatch topic)."""

    async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
        """Presence events, re-published unchanged keyed by org (acks awaited)."""

    async def publish_dispatch_progress(
        self, events: Sequence[CloudEvent[PresenceProgressRelayed]]
    ) -> None:
        """Each to ``data.partition`` of the dispatch topic (acks awaited)."""


class LocalOwner(Protocol):
    """The conversation owner of the same process."""

    #: The partitions of the conversation topics it owns now.
    owned: set[int]

    def observe_presence(self, presence_partitions: int, marks: dict[int, datetime]) -> None:
        """Presence is recorded up to ``marks`` (per presence partition)."""


class MisplacedMark(ValueError):
    """A progress mark on a partition other than the one it is about: it proves nothing."""


@dataclass(frozen=True)
class PresenceRecord:
    """One consumed presence record: its partition and decoded event."""

    partition: int
    event: CloudEvent[EventData]


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
            event_id=name_based_id(COMMAND_NAMESPACE, f"{event.id}|{p}"),
        )
        for p in range(partitions)
    ]


class PresenceRecorder:
    def __init__(
        self,
        store: PresenceStore,
        commands: CommandPublisher,
        *,
        marks: MarkTracker,
        partitions: int = 0,
        presence_partitions: int = 0,
        complete_as_of: Callable[[int], Awaitable[datetime | None]],
        clock: Callable[[], datetime] = utc_now,
        dispatch: PresenceForwarder | None = None,
        local_owner: LocalOwner | None = None,
    ) -> None:
        self._store = store
        #: the owner of the same process: told of progress as soon as it is noted, without
        #: waiting for the relay's tick and its round trip through the commands topic (and
        #: the partitions it owns get no relayed command)
        self._local = local_owner
        #: automatic assignment: presence re-published to the dispatcher, keyed by org
        self._dispatch = dispatch
        self._commands = commands
        self._partitions = partitions
        self._presence_partitions = presence_partitions
        self._marks = marks
        self._complete_as_of = complete_as_of
        self._clock = clock
        #: per partition of the conversation topics: the progress last relayed to its owner
        self._relayed: dict[int, dict[int, datetime]] = {}
        self._dispatch_partitions = 0
        #: the progress last relayed to the dispatcher (every dispatch partition)
        self._relayed_dispatch: dict[int, datetime] | None = None
        self._dispatch_relayed_at: datetime | None = None

    def partition_counts(
        self, partitions: int, presence_partitions: int, dispatch_partitions: int = 0
    ) -> None:
        """The topics' partition counts (known once the producer has connected)."""
        self._partitions = partitions
        self._presence_partitions = presence_partitions
        self._dispatch_partitions = dispatch_partitions

    def assigned(self, partitions: set[int]) -> None:
        self._marks.assigned(partitions, self._clock())

    def revoked(self, partitions: set[int]) -> None:
        self._marks.revoked(partitions)

    async def handle(
        self, records: Sequence[PresenceRecord]
    ) -> list[tuple[PresenceRecord, Exception]]:
        """Record the batch, publish the sweeps, then note its marks; returns refused records."""
        commands: list[Command] = []
        marks: list[tuple[int, datetime]] = []
        refused: list[tuple[PresenceRecord, Exception]] = []
        rekeyed: list[CloudEvent[EventData]] = []
        for record in records:
            event, data = record.event, record.event.data
            if isinstance(data, (AgentSignedIn, AgentSignedOut, AgentAvailabilityChanged)):
                rekeyed.append(event)
            if isinstance(data, PresenceProgressed):
                if data.partition != record.partition:
                    refused.append((record, MisplacedMark(f"mark for {data.partition}")))
                else:
                    marks.append((record.partition, data.watermark))
                continue
            entry = presence_entry(event)
            if entry is None:
                continue  # availability never removes assignments
            await self._store.record_presence(data.org_id, data.subject, entry)
            if not entry.signed_in:
                commands.extend(sweep_commands(event, self._partitions))
        if rekeyed and self._dispatch is not None:
            # after the timelines are stored: an owner never sees a proposal for an agent
            # whose sign-in it does not know yet; and before the sweeps: the conversations
            # R1 frees reach the dispatcher behind the sign-out, never to the agent again
            await self._dispatch.publish_dispatch_inputs(rekeyed)
        if commands:
            await self._commands.publish_commands(commands)
        now = self._clock()
        noted: dict[int, datetime] = {}
        for partition, watermark in marks:
            self._marks.mark(partition, watermark, now)
            noted[partition] = max(watermark, noted.get(partition, watermark))
        if noted and self._local is not None:
            self._local.observe_presence(self._presence_partitions, noted)
        if noted and self._dispatch is not None:
            # at once, not at the next tick: the dispatcher holds new waiting conversations
            # until the presence progress reaches them
            await self.relay(marked=True)
        return refused

    async def relay(self, *, marked: bool = False) -> int:
        """Tell every owner how far presence is recorded, if that moved since it was last
        told; returns commands sent. The owner of this process is told directly: the
        partitions it owns get no command (once another instance owns one, it gets the next)."""
        owned = list(self._marks.latest)
        complete = {p: await self._complete_as_of(p) for p in owned}
        progress = self._marks.progress(self._clock(), complete)
        if not progress:
            return 0
        if self._local is not None:
            self._local.observe_presence(self._presence_partitions, progress)
        local = self._local.owned if self._local is not None else set()
        for p in local:
            self._relayed.pop(p, None)  # once another instance owns it, it is told at once
        targets = [p for p in range(self._partitions) if p not in local]
        targets = [p for p in targets if self._relayed.get(p) != progress]
        now = self._clock()
        to_dispatcher = (
            self._dispatch is not None
            and self._dispatch_partitions > 0
            and self._relayed_dispatch != progress
            and (
                marked
                or self._dispatch_relayed_at is None
                or now - self._dispatch_relayed_at >= DISPATCH_FALLBACK_SPACING
            )
        )
        if not targets and not to_dispatcher:
            return 0
        marks = [PresenceMark(partition=p, progress=t) for p, t in sorted(progress.items())]

        def relayed(partition: int) -> CloudEvent[PresenceProgressRelayed]:
            return CloudEvent.wrap(
                PresenceProgressRelayed(
                    org_id=PROGRESS_ORG_ID,
                    partition_key=str(partition),
                    partition=partition,
                    presence_partitions=self._presence_partitions,
                    marks=marks,
                    occurred_at=now,
                ),
                source=SOURCE,
            )

        commands: list[Command] = [relayed(p) for p in targets]
        sends: list[Awaitable[None]] = []
        if commands:
            sends.append(self._commands.publish_commands(commands))
        if to_dispatcher and self._dispatch is not None:
            # the dispatcher is told through its own stream, whatever instance runs it: a
            # relayed progress t there follows every presence event up to t re-published
            progress_events = [relayed(p) for p in range(self._dispatch_partitions)]
            sends.append(self._dispatch.publish_dispatch_progress(progress_events))
        await asyncio.gather(*sends)
        for p in targets:
            self._relayed[p] = progress
        if to_dispatcher:
            self._relayed_dispatch = progress
            self._dispatch_relayed_at = now
        return len(commands)
