"""The automatic-assignment dispatcher (PRODUCT.md §4): one writer per org.

Consumes ``inbox.routing.dispatch.v1`` (keyed by org, so all of an org's inputs are on one
partition in one order) and keeps one ``OrgDispatcher`` per org. Each record is applied in
offset order exactly once per state; the proposals it yields are published (acks awaited)
before the batch ends. Presence progress (``PresenceProgressRelayed``, relayed to every
partition) is kept per partition and releases the conversations each org held for it.
The state of a partition is a pure function of its records, so it is made durable by **snapshot
+ replay**: every few seconds the state and the offset it reflects are written (in the
background, at most one write in flight); taking a partition over loads the latest snapshot and
seeks to its offset. A replay re-derives exactly the proposals made after the snapshot, with
the same ids, which the owners answer idempotently; so a crash, a rebalance or a zombie
instance can repeat a proposal, never make a different one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from inbox_contracts import CloudEvent, EncodedEvent, EventData, decode, encode_event, json_time
from inbox_contracts.events import (
    AgentAvailabilityChanged,
    AgentSignedIn,
    AgentSignedOut,
    AssignmentProposed,
    AssignmentSettingsChanged,
    Availability,
    ConversationDispatchChanged,
    ConversationsDispatchChanged,
    DispatchChange,
    PresenceProgressRelayed,
)

from routing_service.domain.dispatch import (
    AssignmentSettings,
    Cause,
    ConversationChanged,
    DispatchInput,
    OrgDispatcher,
    PresenceChanged,
    PresenceKind,
    PresenceProgressed,
    Proposal,
    Refusal,
    SettingsChanged,
)
from routing_service.domain.progress import PresenceProgress
from routing_service.domain.values import value

log = logging.getLogger(__name__)
SOURCE = "/inbox/routing/dispatcher"


@dataclass
class PartitionState:
    """Everything the dispatcher knows from one partition: its orgs, and the next offset."""

    partition: int
    next_offset: int = 0
    orgs: dict[str, OrgDispatcher] = field(default_factory=dict)
    changed_orgs: set[str] = field(default_factory=set)
    snapshot_dirty: bool = False
    #: Presence progress relayed on this partition (max per presence partition, min of all).
    presence: PresenceProgress = field(default_factory=PresenceProgress)

    def presence_progressed(self, data: PresenceProgressRelayed) -> list[Proposal]:
        """Release what every org of the partition held for presence up to the new value."""
        self.presence.observe(
            data.presence_partitions, {m.partition: m.progress for m in data.marks}
        )
        value = self.presence.value()
        if value is None:
            return []
        out: list[Proposal] = []
        for org_id, org in self.orgs.items():
            if org.holding:
                out += org.apply(PresenceProgressed(value))
                self.changed_orgs.add(org_id)
            else:
                org.note_presence(value)
        return out

    def org(self, org_id: str) -> OrgDispatcher:
        org = self.orgs.get(org_id)
        if org is None:
            org = self.orgs[org_id] = OrgDispatcher(org_id)
            value = self.presence.value()
            if value is not None:
                org.note_presence(value)
        return org


class DispatchStore(Protocol):
    async def load_snapshot(self, partition: int) -> PartitionState | None: ...
    async def save_snapshot(self, state: Any) -> None:
        """Store a serialized partition state (from ``serialize``) atomically."""

    def serialize(self, state: PartitionState) -> Any:
        """A copy of the state that later changes do not affect (taken under the lock)."""

    async def write_assignment_views(self, views: Sequence[Any]) -> None: ...
    def assignment_view(self, org: OrgDispatcher) -> Any: ...


class ProposalPublisher(Protocol):
    async def publish_proposals(self, proposals: Sequence[EncodedEvent]) -> None:
        """Publish each to its ``partition`` of inbox.routing.proposals.v1 (acks awaited)."""


#: Position the consumer of a partition at an offset (None: where a new state starts, the
#: beginning in production); returns the position.
Seek = Callable[[int, int | None], Awaitable[int]]


def conversation_changed(d: DispatchChange) -> ConversationChanged:
    """The domain input of one conversation's change (a single event, or an element of a
    ``ConversationsDispatchChanged``)."""
    return ConversationChanged(
        d.conversation_id,
        d.partition,
        d.version,
        d.queue,
        d.assignee_id,
        d.channel_id,
        d.waiting_since,
        d.waiting_cause,
        d.occurred_at,
        Cause(d.cause_event_id, d.cause_event_type),
        d.proposal_id,
        Refusal(d.refusal.value) if d.refusal is not None else None,
        d.refused_agent_id,
        d.agent_signed_out_at,
        d.presence_until,
    )


def dispatch_input(event: CloudEvent[EventData]) -> DispatchInput | None:
    """The domain input of a dispatch-topic record (None: not one of ours, or many:
    ``ConversationsDispatchChanged`` is applied change by change)."""
    d = event.data
    cause = Cause(event.id, event.type)
    if isinstance(d, ConversationDispatchChanged):
        return conversation_changed(d)
    if isinstance(d, AgentSignedIn):
        return PresenceChanged(
            d.agent_id, PresenceKind.SIGNED_IN, d.occurred_at, cause, frozenset(d.teams)
        )
    if isinstance(d, AgentSignedOut):
        return PresenceChanged(d.agent_id, PresenceKind.SIGNED_OUT, d.occurred_at, cause)
    if isinstance(d, AgentAvailabilityChanged):
        kind = (
            PresenceKind.AVAILABLE
            if d.availability is Availability.AVAILABLE
            else PresenceKind.AWAY
        )
        return PresenceChanged(d.agent_id, kind, d.occurred_at, cause)
    if isinstance(d, AssignmentSettingsChanged):
        return SettingsChanged(
            AssignmentSettings(
                d.enabled, d.default_capacity, dict(d.team_capacities), dict(d.channel_teams)
            ),
            d.occurred_at,
            cause,
        )
    return None


def encode_proposal(p: Proposal) -> EncodedEvent:
    """The ``AssignmentProposed`` CloudEvent of ``p``, encoded once without building its
    models (about half the CPU, on every proposal; ``test_proposal_encoding.py``: it decodes
    to the event built with the models)."""
    return encode_event(
        AssignmentProposed,
        {
            "org_id": p.org_id,
            "occurred_at": json_time(p.occurred_at),
            "conversation_id": p.conversation_id,
            "partition": p.partition,
            "agent_id": p.agent_id,
            "waiting_cause": p.waiting_cause,
            "channel_id": p.channel_id,
            "team": p.team,
            "waiting_since": json_time(p.waiting_since),
            "reason": p.reason.value,
            # never empty on the wire, even for a state restored from an older snapshot
            "cause_event_id": p.cause.event_id or p.waiting_cause,
            "cause_event_type": p.cause.event_type or "unknown",
            "capacity": p.capacity,
        },
        event_id=p.proposal_id,
        source=SOURCE,
        partition=p.partition,
    )


def decoded_proposals(proposals: Sequence[EncodedEvent]) -> list[CloudEvent[AssignmentProposed]]:
    """The proposals as their consumer reads them (in-memory adapters, benchmarks)."""
    return [cast("CloudEvent[AssignmentProposed]", decode(p.payload)) for p in proposals]


@value
class DispatchRecord:
    partition: int
    offset: int
    event: CloudEvent[EventData]


class Dispatcher:
    def __init__(
        self,
        store: DispatchStore,
        publisher: ProposalPublisher,
        *,
        snapshot_seconds: float = 5.0,
        view_seconds: float = 0.5,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._snapshot_seconds = snapshot_seconds
        self._view_seconds = view_seconds
        self.partitions: dict[int, PartitionState] = {}
        self._last_snapshot = time.monotonic()
        self._snapshot_spacing = snapshot_seconds
        self._serialize_cost = self._write_cost = 0.0
        self._last_views = time.monotonic()
        self._view_spacing = view_seconds
        self._view_build_cost = 0.0
        self._background: asyncio.Task[None] | None = None
        self._outbox: list[EncodedEvent] = []
        self.proposed = 0

    # -- partition ownership --------------------------------------------------------------------

    async def assign(self, partitions: set[int], seek: Seek) -> None:
        """Load each partition's latest snapshot and seek to the offset it reflects."""
        for p in sorted(partitions - set(self.partitions)):
            state = await self._store.load_snapshot(p)
            if state is None:
                state = PartitionState(p, await seek(p, None))
                # an empty state at that position: whoever takes over next starts there too
                await self._store.save_snapshot(self._store.serialize(state))
            else:
                await seek(p, state.next_offset)
            for org in state.orgs.values():
                org.rebuild_queues()
            state.changed_orgs = set(state.orgs)
            self.partitions[p] = state
            log.info(
                "dispatch partition taken over",
                extra={"partition": p, "offset": state.next_offset, "orgs": len(state.orgs)},
            )

    async def revoke(self, partitions: set[int]) -> None:
        await self._wait_background()
        for p in partitions:
            state = self.partitions.pop(p, None)
            if state is not None and state.snapshot_dirty:
                # so the next owner replays less; its records were all handled and published
                await self._store.save_snapshot(self._store.serialize(state))

    # -- handling -----------------------------------------------------------------------------

    async def handle(self, records: Sequence[DispatchRecord]) -> list[Proposal]:
        proposals: list[Proposal] = []
        for r in records:
            state = self.partitions.get(r.partition)
            if state is None or r.offset != state.next_offset:
                # not ours, or not the next record of our state (a batch fetched before the
                # take-over's seek, or a redelivery of records the snapshot already holds)
                continue
            state.next_offset = r.offset + 1
            state.snapshot_dirty = True
            if isinstance(r.event.data, PresenceProgressRelayed):
                proposals += state.presence_progressed(r.event.data)
                continue
            if isinstance(r.event.data, ConversationsDispatchChanged):
                # each change exactly as the single event it stands for (one input each)
                org = state.org(r.event.data.org_id)
                for change in r.event.data.changes:
                    proposals += org.apply(conversation_changed(change))
                state.changed_orgs.add(r.event.data.org_id)
                continue
            inp = dispatch_input(r.event)
            if inp is None:
                continue
            org_id = r.event.data.org_id
            proposals += state.org(org_id).apply(inp)
            state.changed_orgs.add(org_id)
        # made but not published yet (a failed publish is retried with the same batch, whose
        # records are then already applied: the outbox is what carries them over)
        self._outbox += [encode_proposal(p) for p in proposals]
        if self._outbox:
            out = list(self._outbox)
            await self._publisher.publish_proposals(out)
            del self._outbox[: len(out)]
            self.proposed += len(out)
        self._maybe_persist()
        return proposals

    # -- background persistence ----------------------------------------------------------------

    def _maybe_persist(self) -> None:
        if self._background is not None and not self._background.done():
            return
        now = time.monotonic()
        snapshots: list[Any] = []
        views: list[Any] = []
        if now - self._last_snapshot >= self._snapshot_spacing:
            for state in self.partitions.values():
                if state.snapshot_dirty:
                    snapshots.append(self._store.serialize(state))
                    state.snapshot_dirty = False
            self._last_snapshot = time.monotonic()
            # serializing holds the loop: keep it under ~5% of the time, whatever the size
            cost = self._last_snapshot - now
            self._serialize_cost = cost
            self._snapshot_spacing = max(
                self._snapshot_seconds, 20 * self._serialize_cost, 10 * self._write_cost
            )
        if now - self._last_views >= self._view_spacing:
            self._last_views = now
            for state in self.partitions.values():
                views += [self._store.assignment_view(state.orgs[o]) for o in state.changed_orgs]
                state.changed_orgs.clear()
            # building them holds the loop (each scans its org's open conversations): keep it
            # under ~5% of the time too, whatever the org's size
            self._view_build_cost = time.monotonic() - now
            self._view_spacing = max(self._view_spacing, 20 * self._view_build_cost)
        if snapshots or views:
            self._background = asyncio.create_task(self._persist(snapshots, views))

    async def _persist(self, snapshots: list[Any], views: list[Any]) -> None:
        # The database is shared with the owners' hot path (one SQLite writer on FerretDB):
        # each kind of write is spaced so that it takes at most ~10% of the time.
        try:
            if views:
                started = time.monotonic()
                await self._store.write_assignment_views(views)
                self._view_spacing = max(
                    self._view_seconds,
                    10 * (time.monotonic() - started),
                    20 * self._view_build_cost,
                )
            if snapshots:
                started = time.monotonic()
                for snap in snapshots:
                    await self._store.save_snapshot(snap)
                self._write_cost = time.monotonic() - started
                self._snapshot_spacing = max(
                    self._snapshot_seconds, 20 * self._serialize_cost, 10 * self._write_cost
                )
        except Exception:
            log.warning("dispatch state not persisted; retried at the next interval", exc_info=True)
            for state in self.partitions.values():
                state.snapshot_dirty = True

    async def _wait_background(self) -> None:
        if self._background is not None:
            await asyncio.gather(self._background, return_exceptions=True)

    async def run(self) -> None:
        """Persist on time also when no records arrive (the last change of a burst)."""
        try:
            while True:
                await asyncio.sleep(self._view_seconds / 2)
                self._maybe_persist()  # synchronous up to the background task: no lock needed
        finally:
            # stopping: a write still in flight would outlive the database client (the next
            # owner replays from the last snapshot written)
            if self._background is not None and not self._background.done():
                self._background.cancel()

    async def flush(self) -> None:
        """Persist everything now (tests, shutdown)."""
        await self._wait_background()
        self._last_snapshot = self._last_views = float("-inf")
        self._maybe_persist()
        await self._wait_background()
