"""Event builders and an in-memory routing pipeline, for tests and benchmarks."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime

from inbox_contracts import CloudEvent, EventData
from inbox_contracts.events import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    Availability,
    ConversationAssigned,
    ConversationResolved,
    ConversationUnassigned,
    FollowUpDue,
    InboundMessageReceived,
    OutboundMessageSent,
    SignOutReason,
)

from routing_service.adapters.memory import (
    InMemoryStore,
    QueueingCommandPublisher,
    RecordingDecisionPublisher,
)
from routing_service.domain.model import SettingChange, decision_id
from routing_service.domain.reference import HistoryEvent, run_reference
from routing_service.service_layer.owner import BatchOutcome, ConversationOwner, Delivery
from routing_service.service_layer.presence import PresenceRecorder
from routing_service.service_layer.translate import conversation_entry

SRC = "/inbox/test"


def _id(event_id: str | None) -> str:
    return event_id or str(uuid.uuid4())


def inbound(
    org: str, conv: str, at: datetime, event_id: str | None = None, channel: str = "ch-1"
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        InboundMessageReceived(
            org_id=org,
            conversation_id=conv,
            message_id=f"m-{uuid.uuid4().hex[:8]}",
            channel_id=channel,
            contact_id="contact-1",
            occurred_at=at,
        ),
        source=SRC,
        event_id=_id(event_id),
    )


def outbound(
    org: str, conv: str, at: datetime, agent: str = "agent-x", event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        OutboundMessageSent(
            org_id=org,
            conversation_id=conv,
            message_id=f"m-{uuid.uuid4().hex[:8]}",
            channel_id="ch-1",
            agent_id=agent,
            occurred_at=at,
        ),
        source=SRC,
        event_id=_id(event_id),
    )


def follow_up(
    org: str, conv: str, at: datetime, event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        FollowUpDue(org_id=org, conversation_id=conv, reminder_id="rem-1", occurred_at=at),
        source=SRC,
        event_id=_id(event_id),
    )


def assigned(
    org: str, conv: str, agent: str, at: datetime, by: str = "admin-1", event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        ConversationAssigned(
            org_id=org, conversation_id=conv, assignee_id=agent, assigned_by=by, occurred_at=at
        ),
        source=SRC,
        event_id=_id(event_id),
    )


def unassigned(
    org: str, conv: str, at: datetime, by: str = "admin-1", event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        ConversationUnassigned(org_id=org, conversation_id=conv, unassigned_by=by, occurred_at=at),
        source=SRC,
        event_id=_id(event_id),
    )


def resolved(
    org: str, conv: str, at: datetime, by: str = "agent-x", event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        ConversationResolved(org_id=org, conversation_id=conv, resolved_by=by, occurred_at=at),
        source=SRC,
        event_id=_id(event_id),
    )


def signed_in(
    org: str,
    agent: str,
    at: datetime,
    event_id: str | None = None,
    teams: Sequence[str] = (),
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        AgentSignedIn(
            org_id=org, agent_id=agent, session_id="s-1", teams=list(teams), occurred_at=at
        ),
        source=SRC,
        event_id=_id(event_id),
    )


def availability(
    org: str, agent: str, at: datetime, *, available: bool, event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        AgentAvailabilityChanged(
            org_id=org,
            agent_id=agent,
            availability=Availability.AVAILABLE if available else Availability.AWAY,
            occurred_at=at,
        ),
        source=SRC,
        event_id=_id(event_id),
    )


def signed_out(
    org: str, agent: str, at: datetime, event_id: str | None = None
) -> CloudEvent[EventData]:
    return CloudEvent.wrap(
        AgentSignedOut(
            org_id=org,
            agent_id=agent,
            session_id="s-1",
            reason=SignOutReason.EXPLICIT,
            occurred_at=at,
        ),
        source=SRC,
        event_id=_id(event_id),
    )


def partition_of(conversation_id: str, partitions: int) -> int:
    return zlib.crc32(conversation_id.encode()) % partitions


class InMemoryRouting:
    """The real service layer (owner + presence recorder) over in-memory adapters.

    ``deliver`` feeds one event the way a consumer would; sweep commands produced by the
    presence recorder wait in ``commands.pending`` until ``deliver_commands``.
    """

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.store = InMemoryStore()
        self.decisions = RecordingDecisionPublisher()
        self.commands = QueueingCommandPublisher()
        self.owner = ConversationOwner(self.store, self.decisions)
        self.recorder = PresenceRecorder(self.store, self.commands, partitions)
        self.started = False

    async def start(self) -> None:
        await self.owner.assign(range(self.partitions))
        self.started = True

    async def set_setting(self, org: str, enabled: bool, at: datetime) -> None:
        await self.store.append_setting(org, SettingChange(at, enabled, "admin-1"))

    async def deliver(self, event: CloudEvent[EventData]) -> BatchOutcome | None:
        if event.type.startswith("inbox.presence."):
            await self.recorder.handle([event])
            return None
        p = partition_of(event.subject, self.partitions)
        return await self.owner.handle([Delivery(p, event)])

    async def deliver_batch(self, events: list[CloudEvent[EventData]]) -> BatchOutcome:
        deliveries = [Delivery(partition_of(e.subject, self.partitions), e) for e in events]
        return await self.owner.handle(deliveries)

    async def deliver_commands(self, count: int | None = None) -> None:
        pending = self.commands.pending
        take = pending if count is None else pending[:count]
        rest = [] if count is None else pending[count:]
        self.commands.pending = rest
        if take:
            await self.owner.handle([Delivery(c.data.partition, c) for c in take])

    async def crash_and_restart(self) -> None:
        """Lose all memory; a fresh owner takes the partitions over from the store."""
        self.owner = ConversationOwner(self.store, self.decisions)
        await self.owner.assign(range(self.partitions))

    def state(self, org: str, conv: str) -> tuple[str | None, str | None]:
        v = self.store.views.get((org, conv))
        if v is None:
            return (None, None)
        return (v.state.queue.value if v.state.queue else None, v.state.assignee_id)


def to_history(event: CloudEvent[EventData]) -> HistoryEvent:
    """The reference model's view of a contract event."""
    d = event.data
    at = d.occurred_at
    if isinstance(d, AgentSignedIn | AgentSignedOut):
        kind = "signed_in" if isinstance(d, AgentSignedIn) else "signed_out"
        return HistoryEvent(event.id, at, kind, agent_id=d.agent_id)
    entry = conversation_entry(event)
    assert entry is not None, event.type
    return HistoryEvent(
        event.id, at, entry.kind.value, conversation_id=d.subject, agent_id=entry.assignee_id
    )


def expected_outcome(
    events: list[CloudEvent[EventData]], setting_on_since: datetime | None
) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """(conversation -> (queue, assignee or "")), decision ids) per the reference model."""
    history = [to_history(e) for e in events]
    if setting_on_since is not None:
        history.append(HistoryEvent("setting-on", setting_on_since, "setting", enabled=True))
    ref = run_reference(history)
    org = events[0].data.org_id
    states = {c: (v.queue.value, v.assignee or "") for c, v in ref.conversations.items()}
    ids = {decision_id(cause, org, conv, reason) for conv, _prev, reason, cause in ref.decisions}
    return states, ids
