"""Test support for routing (not imported by the service): event builders, the in-memory
routing pipeline (the real service layer over in-memory adapters), presence progress marks,
and the reference model (``routing_testing.reference``)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from inbox_contracts import CloudEvent, EventData, utc_now
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
    PresenceProgressed,
    SignOutReason,
)
from inbox_contracts.topics import CONVERSATIONS, MESSAGES, PRESENCE, ROUTING_COMMANDS
from routing_service.adapters.memory import (
    InMemoryStore,
    InMemoryViews,
    QueueingCommandPublisher,
    RecordingDecisionPublisher,
)
from routing_service.domain.model import SettingChange, decision_id
from routing_service.domain.progress import MarkTracker
from routing_service.service_layer.owner import (
    BatchOutcome,
    Compacting,
    ConversationOwner,
    Delivery,
    EventTime,
)
from routing_service.service_layer.presence import PresenceRecord, PresenceRecorder
from routing_service.service_layer.translate import conversation_entry

from routing_testing.reference import HistoryEvent, run_reference

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


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


#: "Every input complete": the clock of the rule tests, where decisions are taken at once.
FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


class SimClock:
    """A settable clock: the simulated wall time of consumption."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def complete_now(clock: SimClock) -> Callable[..., Awaitable[datetime | None]]:
    """The simulated consumers have, at every instant, everything produced so far."""

    async def complete_as_of(*_: object) -> datetime | None:
        return clock.now

    return complete_as_of


def progress_mark(partition: int, watermark: datetime) -> CloudEvent[EventData]:
    return CloudEvent.wrap(PresenceProgressed.at(partition, watermark), source=SRC)


class ProgressMarks:
    """Publishes presence progress marks the way presence does: every ``interval`` on every
    partition of inbox.presence.v1, watermark = now - ``margin`` (or ``hold`` if earlier).

    Publish presence events through the same ``producer`` (one producer keeps partition
    order), stamped no earlier than ``margin`` before they are sent, or set ``hold`` first.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        interval: float = 0.05,
        margin: timedelta = timedelta(milliseconds=50),
    ) -> None:
        self._producer = producer
        self._interval = interval
        self._margin = margin
        self.hold: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ProgressMarks:
        partitions = sorted(await self._producer.partitions_for(PRESENCE.name))
        self._task = asyncio.create_task(self._run(partitions))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, partitions: list[int]) -> None:
        while True:
            watermark = utc_now() - self._margin
            if self.hold is not None:
                watermark = min(watermark, self.hold)
            for p in partitions:
                mark = progress_mark(p, watermark)
                await self._producer.send(
                    PRESENCE.name, mark.to_json_bytes(), key=str(p).encode(), partition=p
                )
            await asyncio.sleep(self._interval)


class InMemoryRouting:
    """The real service layer (owner + presence recorder) over in-memory adapters.

    ``deliver`` feeds one event the way a consumer would; commands produced by the presence
    recorder (sweeps, relayed progress) wait in ``commands.pending`` until ``deliver_commands``.

    ``instant=True`` (rule tests): the clock stands in the far future and presence progress is
    complete, so every decision is final at once. ``instant=False`` (event-time tests): the
    clock is ``clock.now``, presence progress comes only from the marks delivered, and
    ``drain`` completes every input at the end.
    """

    def __init__(
        self,
        partitions: int = 3,
        *,
        presence_partitions: int = 1,
        lateness: timedelta = timedelta(0),
        instant: bool = True,
        start_time: datetime = FAR_FUTURE,
        compacting: Compacting | None = None,
    ) -> None:
        self.partitions = partitions
        self.compacting = compacting
        self.presence_partitions = presence_partitions
        self.instant = instant
        self.clock = SimClock(FAR_FUTURE if instant else start_time)
        self.event_time = EventTime(lateness, complete_as_of=complete_now(self.clock))
        self.store = InMemoryStore()
        self.decisions = RecordingDecisionPublisher()
        self.commands = QueueingCommandPublisher()
        self.owner = self._new_owner()
        self.recorder = PresenceRecorder(
            self.store,
            self.commands,
            partitions=partitions,
            presence_partitions=presence_partitions,
            marks=MarkTracker(timeout=timedelta(days=3650), lateness=lateness),
            complete_as_of=complete_now(self.clock),
            clock=self.clock,
        )
        self.recorder.assigned(set(range(presence_partitions)))
        self.started = False
        #: Per crash, the decisions published but not marked published at that moment.
        self.unmarked_at_crashes: list[str] = []

    def _new_owner(self) -> ConversationOwner:
        return ConversationOwner(
            self.store,
            self.decisions,
            InMemoryViews(self.store),
            self.event_time,
            compacting=self.compacting,
        )

    async def start(self) -> None:
        await self.owner.assign(range(self.partitions))
        if self.instant:
            await self.complete_presence()
        self.started = True

    async def complete_presence(self) -> None:
        """Presence progress at the far future on every presence partition, relayed."""
        for p in range(self.presence_partitions):
            await self.recorder.handle([PresenceRecord(p, progress_mark(p, FAR_FUTURE))])
        await self.recorder.relay()
        await self.deliver_commands()

    async def drain(self) -> None:
        """Every input complete: take every decision still waiting for progress."""
        await self.deliver_commands()
        await self.complete_presence()
        self.clock.now = FAR_FUTURE
        await self.owner.release_due()

    async def set_setting(self, org: str, enabled: bool, at: datetime) -> None:
        await self.store.append_setting(org, SettingChange(at, enabled, "admin-1"))

    async def deliver(
        self, event: CloudEvent[EventData], *, partition: int | None = None
    ) -> BatchOutcome | None:
        """Presence events go to the recorder (on ``partition``, by default the key's)."""
        if event.type.startswith("inbox.presence."):
            p = partition_of(event.subject, self.presence_partitions)
            p = p if partition is None else partition
            await self.recorder.handle([PresenceRecord(p, event)])
            return None
        return await self.deliver_batch([event])

    async def deliver_batch(self, events: list[CloudEvent[EventData]]) -> BatchOutcome:
        deliveries = [
            Delivery(topic_of(e), partition_of(e.subject, self.partitions), e) for e in events
        ]
        return await self.owner.handle(deliveries)

    async def deliver_commands(self, count: int | None = None) -> None:
        pending = self.commands.pending
        take = pending if count is None else pending[:count]
        rest = [] if count is None else pending[count:]
        self.commands.pending = rest
        if take:
            await self.owner.handle(
                [Delivery(ROUTING_COMMANDS.name, c.data.partition, c) for c in take]
            )

    async def crash_and_restart(self, *, marks_landed: bool = False) -> None:
        """Lose all memory; a fresh owner takes the partitions over from the store. The
        marks of the decisions the last batch published land first only with
        ``marks_landed`` (they are stored in the background: a crash can lose them)."""
        if marks_landed:
            await self.owner.settle_marks(timeout=10)
        else:
            self.owner.abandon_marks()
        # a take-over publishes these again (same ids): the only repeats a crash may cause
        self.unmarked_at_crashes += [
            d.decision_id
            for d in self.decisions.published
            if d.decision_id not in self.store.published
        ]
        self.owner = self._new_owner()
        await self.owner.assign(range(self.partitions))
        if self.instant:
            await self.complete_presence()

    def state(self, org: str, conv: str) -> tuple[str | None, str | None]:
        v = self.store.views.get((org, conv))
        if v is None:
            return (None, None)
        return (v.state.queue.value if v.state.queue else None, v.state.assignee_id)


def topic_of(event: CloudEvent[EventData]) -> str:
    """The topic an event of ours travels on."""
    for topic in (MESSAGES, CONVERSATIONS, PRESENCE):
        if type(event.data) in topic.event_types:
            return topic.name
    raise ValueError(event.type)


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
