"""Pure routing rules (PRODUCT.md §1): queue moves, manual assignment, R1-R4.

A conversation's state is a *fold* over everything known about it, in event-time order:
its own events (messages, assignment changes, resolves, follow-ups), the presence timelines
of every agent that was ever its assignee, the org's setting history, and the automatic
unassignments already published ("facts", which can never be taken back). Folding again
whenever something new is known makes the outcome independent of arrival order, except where
a published decision has to stand (see the README, "late-arriving events").
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from inbox_kit.ids import name_based_id

from routing_service.domain.values import value

if TYPE_CHECKING:
    from routing_service.domain.audit import AuditArchive

DECISION_NAMESPACE = uuid.UUID("6c1bd7a4-7a57-4c39-9e0b-7a4f1f3a2b10")


class Queue(StrEnum):
    NEW = "NEW"
    PENDING = "PENDING"
    RESOLVED = "RESOLVED"


class EntryKind(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    FOLLOW_UP = "follow_up"
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    RESOLVED = "resolved"
    #: Accepted automatic assignment (PRODUCT.md §4); event id = the proposal id.
    AUTO_ASSIGNED = "auto_assigned"


class Reason(StrEnum):
    R1_SIGNED_OUT = "agent_signed_out"
    R2_MOVED_TO_NEW = "moved_to_new_while_signed_out"


class AuditKind(StrEnum):
    CREATED = "created"
    QUEUE_MOVED = "queue_moved"
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    AUTO_UNASSIGNED = "auto_unassigned"
    AUTO_ASSIGNED = "auto_assigned"


@value
class ConversationEntry:
    """One event of the conversation itself (messages and conversations topics)."""

    event_id: str
    event_type: str
    kind: EntryKind
    occurred_at: datetime
    #: Who did it: contact id (inbound), agent id (outbound, assign, unassign, resolve),
    #: reminder id (follow-up).
    actor: str
    #: The new assignee (ASSIGNED, AUTO_ASSIGNED).
    assignee_id: str | None = None
    #: The channel it happened on (messages), for automatic assignment's team routing.
    channel_id: str | None = None
    #: AUTO_ASSIGNED only: why, and the event that caused it.
    reason: str | None = None
    cause_event_id: str | None = None
    cause_event_type: str | None = None

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.occurred_at, 1, self.event_id)


@value
class PresenceEntry:
    """A sign-in or sign-out of an agent (presence topic)."""

    event_id: str
    event_type: str
    occurred_at: datetime
    signed_in: bool

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        # At equal times presence comes first: an event at the very instant of a sign-out
        # sees the agent signed out.
        return (self.occurred_at, 0, self.event_id)


@value
class Decision:
    """An automatic unassignment (published on inbox.routing.v1)."""

    decision_id: str
    org_id: str
    conversation_id: str
    previous_assignee_id: str
    #: Event id of the assignment this decision removed; a published decision only ever
    #: removes that very assignment, never a later one.
    assignment_id: str
    reason: Reason
    cause_event_id: str
    cause_event_type: str
    occurred_at: datetime
    #: Sort key of the cause, so the fact is replayed right after it.
    cause_rank: int = 1

    @property
    def sort_key(self) -> tuple[datetime, int, str, int]:
        return (self.occurred_at, self.cause_rank, self.cause_event_id, 1)


def decision_id(cause_event_id: str, org_id: str, conversation_id: str, reason: Reason) -> str:
    """Deterministic: the same cause re-processed (after a crash) yields the same id."""
    return name_based_id(
        DECISION_NAMESPACE, f"{cause_event_id}|{org_id}|{conversation_id}|{reason}"
    )


@value
class AuditEntry:
    """One line of "who changed this conversation, when and why"."""

    kind: AuditKind
    occurred_at: datetime
    actor: str
    event_id: str
    event_type: str
    from_queue: Queue | None = None
    to_queue: Queue | None = None
    assignee_id: str | None = None
    previous_assignee_id: str | None = None
    reason: Reason | None = None
    decision_id: str | None = None
    #: AUTO_ASSIGNED: why routing assigned it (``AssignReason`` value).
    assign_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SettingChange:
    effective_from: datetime
    remove_assignment_on_sign_out: bool
    changed_by: str = ""


@dataclass(frozen=True)
class SettingsHistory:
    """The org's "Remove assignment" setting over time (off before the first change)."""

    changes: tuple[SettingChange, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "changes", tuple(sorted(self.changes, key=lambda c: c.effective_from))
        )
        object.__setattr__(self, "_times", [c.effective_from for c in self.changes])

    def enabled_at(self, t: datetime) -> bool:
        i = bisect_right(self._times, t)  # type: ignore[attr-defined]
        return i > 0 and self.changes[i - 1].remove_assignment_on_sign_out

    def current(self) -> SettingChange | None:
        return self.changes[-1] if self.changes else None

    def prefix(self, t: datetime) -> tuple[int, SettingChange | None]:
        """How many changes are in force at or before ``t``, and the latest of them: what a
        fold of events up to ``t`` depended on (``FoldPoint``)."""
        i = bisect_right(self._times, t)  # type: ignore[attr-defined]
        return i, (self.changes[i - 1] if i else None)

    def with_change(self, change: SettingChange) -> SettingsHistory:
        return SettingsHistory((*self.changes, change))


@value
class ConversationState:
    org_id: str
    conversation_id: str
    queue: Queue | None = None  # None: not known yet (no event folded)
    assignee_id: str | None = None
    assignment_id: str | None = None
    assigned_at: datetime | None = None
    assigned_by: str | None = None
    #: Was the assignee signed in when the assignment was made (R3 if not)?
    assignee_signed_in_at_assignment: bool | None = None
    #: Has the assignee signed out since the assignment (arms R2)?
    assignee_signed_out_since: bool = False
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.queue is not None

    # The fold's transitions build the new state positionally: ``dataclasses.replace`` costs
    # several times as much, once or twice per event folded.

    def unassigned(self, at: datetime) -> ConversationState:
        """The same conversation with no assignee (and nothing left of the assignment)."""
        return ConversationState(self.org_id, self.conversation_id, self.queue, updated_at=at)

    def in_queue(self, queue: Queue, at: datetime) -> ConversationState:
        """The same conversation moved to ``queue`` at ``at``."""
        return ConversationState(
            self.org_id,
            self.conversation_id,
            queue,
            self.assignee_id,
            self.assignment_id,
            self.assigned_at,
            self.assigned_by,
            self.assignee_signed_in_at_assignment,
            self.assignee_signed_out_since,
            at,
        )

    def assignee_signed_out(self) -> ConversationState:
        """The same conversation, its assignee signed out since the assignment (arms R2)."""
        return ConversationState(
            self.org_id,
            self.conversation_id,
            self.queue,
            self.assignee_id,
            self.assignment_id,
            self.assigned_at,
            self.assigned_by,
            self.assignee_signed_in_at_assignment,
            True,
            self.updated_at,
        )

    def assigned(
        self, assignee_id: str, assignment_id: str, at: datetime, by: str, signed_in: bool
    ) -> ConversationState:
        """The same conversation assigned to ``assignee_id`` by the event ``assignment_id``."""
        return ConversationState(
            self.org_id,
            self.conversation_id,
            self.queue,
            assignee_id=assignee_id,
            assignment_id=assignment_id,
            assigned_at=at,
            assigned_by=by,
            assignee_signed_in_at_assignment=signed_in,
            updated_at=at,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A conversation's fold up to its ``horizon`` (event time), and what later folds need.

    Everything stamped at or before the horizon (its events, the decisions taken on them, its
    assignees' presence) is folded into ``state`` and ``audit``; a later fold starts from here
    and replays only what is stamped after the horizon. An event stamped at or before the
    horizon can therefore not be folded any more (README, "The horizon rule").
    """

    state: ConversationState
    audit: tuple[AuditEntry, ...]
    horizon: datetime
    #: Events and decisions folded in, so the dispatch version keeps growing.
    folded: int = 0
    #: Channel of the latest message folded in (automatic assignment's team routing).
    channel_id: str | None = None
    #: Event time of the latest event folded in.
    latest_at: datetime | None = None
    #: Older audit entries moved out of ``audit`` (None: none yet; ``domain.audit``).
    archive: AuditArchive | None = None

    @property
    def resident(self) -> bool:
        """NEW and assigned: a sign-out sweep must find it, so its owner keeps it in memory."""
        return self.state.queue is Queue.NEW and self.state.assignee_id is not None


ItemKey = tuple[datetime, int, str, int]


def _presence_item_key(p: PresenceEntry) -> ItemKey:
    return (*p.sort_key, 0)


def _timeline_prefix(timeline: Sequence[PresenceEntry], last: ItemKey) -> tuple[int, str | None]:
    """How many of an agent's transitions sort at or before ``last``, and the latest one."""
    n = bisect_right(timeline, last, key=_presence_item_key)
    return n, (timeline[n - 1].event_id if n else None)


def _entry_key(e: ConversationEntry) -> ItemKey:
    return (*e.sort_key, 0)


@value
class FoldPoint:
    """A point a fold of a conversation's log passed through, so that the next fold of the
    same log can go on from there instead of replaying everything (``fold(resume=...)``):
    the end of the fold, or, if it left a decision pending, just before the item that
    caused the first pending one (which a later fold may take once it is final).

    ``state`` and ``audit`` are the fold's after every item sorting at or before ``last``.
    Going on from here gives the result of a fold from scratch as long as nothing the fold
    read at or before ``last`` has changed: the same snapshot, the same entries and facts
    sorting at or before ``last`` (they are only ever added to, so the counts tell), every
    agent's presence and the org's settings up to ``last`` unchanged."""

    snapshot: Snapshot | None
    state: ConversationState
    audit: tuple[AuditEntry, ...]
    last: ItemKey
    #: How many entries and facts the fold saw (the log's first ones, in insertion order;
    #: the facts include the fold's own new decisions, which the caller records as facts),
    #: and whether all of them sort at or before ``last`` (not so for a point before a
    #: pending decision).
    entries: int
    facts: int
    all_before: bool
    #: Per agent whose presence the fold read: ``_timeline_prefix`` at ``last``.
    presence: tuple[tuple[str, tuple[int, str | None]], ...]
    settings: tuple[int, SettingChange | None]

    def continues(
        self,
        snapshot: Snapshot | None,
        entries: Sequence[ConversationEntry],
        facts: Sequence[Decision],
        timelines: Mapping[str, Sequence[PresenceEntry]],
        settings: SettingsHistory,
    ) -> bool:
        """Can a fold of these inputs go on from this point (same outcome as from scratch)?
        ``entries`` and ``facts`` in the log's insertion order, only ever appended to: what
        came after the ones the fold saw must sort after ``last``."""
        last = self.last
        return (
            snapshot is self.snapshot
            and len(entries) >= self.entries
            and len(facts) >= self.facts
            and all(_entry_key(e) > last for e in entries[self.entries :])
            and all(f.sort_key > last for f in facts[self.facts :])
            and settings.prefix(last[0]) == self.settings
            and all(
                _timeline_prefix(timelines.get(agent, ()), last) == seen
                for agent, seen in self.presence
            )
        )


@value
class FoldResult:
    state: ConversationState
    #: Decisions the fold takes that are not among the facts yet (to publish).
    new_decisions: tuple[Decision, ...]
    audit: tuple[AuditEntry, ...]
    #: Event time of the earliest decision beyond ``final_until`` (None: nothing pending).
    pending_at: datetime | None = None
    #: Where the next fold of the same log can go on from (None: nothing folded, or it
    #: folded only up to ``until``).
    point: FoldPoint | None = None


def _signed_in(timeline: Sequence[PresenceEntry], key: tuple[datetime, int, str]) -> bool:
    """State of the agent just before the item with sort ``key`` (no events: signed out)."""
    last: PresenceEntry | None = None
    for p in timeline:
        if p.sort_key < key:
            last = p
        else:
            break
    return last.signed_in if last is not None else False


def fold(
    org_id: str,
    conversation_id: str,
    entries: Iterable[ConversationEntry],
    *,
    timelines: Mapping[str, Sequence[PresenceEntry]],
    settings: SettingsHistory,
    facts: Iterable[Decision] = (),
    final_until: datetime | None = None,
    snapshot: Snapshot | None = None,
    until: datetime | None = None,
    resume: FoldPoint | None = None,
) -> FoldResult:
    """Replay everything known about one conversation in event-time order.

    ``timelines`` must hold (sorted) presence of every agent that appears as assignee in
    ``entries`` or ``facts``; missing agents count as never signed in.

    Only decisions at event time <= ``final_until`` are taken (None: none yet): beyond it an
    input could still bring an event that changes them (see ``domain.progress``). A later
    decision is not applied; ``FoldResult.pending_at`` tells when the earliest one would be
    due, so the owner folds again once progress has reached it. Facts (decisions already
    taken) always apply.

    With a ``snapshot`` the fold starts from it and replays only what is stamped after its
    horizon; with ``until`` it stops after what is stamped at or before ``until`` (compaction).

    ``resume``: the ``point`` of the previous fold of the same log (its new decisions recorded
    among the facts since). If it ``continues`` these inputs, only what sorts after it is
    folded, on top of its state: the same result as folding everything again.
    """
    horizon = snapshot.horizon if snapshot is not None else None

    def kept(at: datetime) -> bool:
        return (horizon is None or at > horizon) and (until is None or at <= until)

    entry_list = entries if isinstance(entries, list) else list(entries)
    fact_list = facts if isinstance(facts, list) else list(facts)
    start = (
        resume
        if resume is not None
        and until is None
        and resume.continues(snapshot, entry_list, fact_list, timelines, settings)
        else None
    )
    fact_by_id = {f.decision_id: f for f in fact_list if kept(f.occurred_at)}
    items: list[tuple[ItemKey, object, str | None]] = []
    if start is None:
        for e in entry_list:
            if kept(e.occurred_at):
                items.append((_entry_key(e), e, None))
        for f in fact_by_id.values():
            items.append((f.sort_key, f, None))
        for agent, timeline in timelines.items():
            for p in timeline:
                if not p.signed_in and kept(p.occurred_at):
                    items.append((_presence_item_key(p), p, agent))
                # sign-ins need no step: R2 looks the presence up, and R4 follows from that.
    else:
        # only what sorts after the point (``FoldPoint.continues`` checked the rest): what
        # came since, and, for a point before a pending decision, what it saw after it
        since = start.entries if start.all_before else 0
        for e in entry_list[since:]:
            if (k := _entry_key(e)) > start.last and kept(e.occurred_at):
                items.append((k, e, None))
        since = start.facts if start.all_before else 0
        for f in fact_list[since:]:
            if f.sort_key > start.last and f.decision_id in fact_by_id:
                items.append((f.sort_key, f, None))
        for agent, timeline in timelines.items():
            after = bisect_right(timeline, start.last, key=_presence_item_key)
            for p in timeline[after:]:
                if not p.signed_in and kept(p.occurred_at):
                    items.append((_presence_item_key(p), p, agent))
    items.sort(key=lambda it: it[0])

    if start is not None:
        s = start.state
        audit: list[AuditEntry] = list(start.audit)
    else:
        s = snapshot.state if snapshot is not None else ConversationState(org_id, conversation_id)
        audit = list(snapshot.audit) if snapshot is not None else []
    new: list[Decision] = []
    applied: set[str] = set()
    pending_at: datetime | None = None
    #: Sort key of the last item folded, or of a decision taken (``FoldPoint.last``).
    last: ItemKey | None = start.last if start is not None else None
    #: (state, audit length, last) before the current item, and before the item that left
    #: the first decision pending (where the next fold can go on from).
    before: tuple[ConversationState, int, ItemKey | None] = (s, len(audit), last)
    checkpoint: tuple[ConversationState, int, ItemKey | None] | None = None

    def unassign_by_rule(
        reason: Reason, cause_id: str, cause_type: str, at: datetime, rank: int
    ) -> None:
        nonlocal s, pending_at, last, checkpoint
        assert s.assignee_id is not None and s.assignment_id is not None
        did = decision_id(cause_id, org_id, conversation_id, reason)
        if did not in fact_by_id and (final_until is None or at > final_until):
            # not final yet: an event that could still come may change it
            pending_at = at if pending_at is None else min(pending_at, at)
            if checkpoint is None:
                checkpoint = before
            return
        d = fact_by_id.get(did) or Decision(
            did,
            org_id,
            conversation_id,
            s.assignee_id,
            s.assignment_id,
            reason,
            cause_id,
            cause_type,
            at,
            rank,
        )
        if did not in fact_by_id:
            new.append(d)
        applied.add(did)
        if last is None or d.sort_key > last:
            last = d.sort_key
        audit.append(
            AuditEntry(
                AuditKind.AUTO_UNASSIGNED,
                at,
                "routing",
                cause_id,
                cause_type,
                previous_assignee_id=s.assignee_id,
                reason=reason,
                decision_id=did,
            )
        )
        s = s.unassigned(at)

    def move(to: Queue, e: ConversationEntry) -> None:
        nonlocal s
        if s.queue != to:
            audit.append(
                AuditEntry(
                    AuditKind.QUEUE_MOVED,
                    e.occurred_at,
                    e.actor,
                    e.event_id,
                    e.event_type,
                    from_queue=s.queue,
                    to_queue=to,
                )
            )
            s = s.in_queue(to, e.occurred_at)

    def unassign_by_hand(e: ConversationEntry) -> None:
        nonlocal s
        if s.assignee_id is not None:
            audit.append(
                AuditEntry(
                    AuditKind.UNASSIGNED,
                    e.occurred_at,
                    e.actor,
                    e.event_id,
                    e.event_type,
                    previous_assignee_id=s.assignee_id,
                )
            )
            s = s.unassigned(e.occurred_at)

    def r2_check(e: ConversationEntry) -> None:
        if (
            s.assignee_id is not None
            and s.assignee_signed_out_since
            and settings.enabled_at(e.occurred_at)
            and not _signed_in(timelines.get(s.assignee_id, ()), e.sort_key)
        ):
            unassign_by_rule(Reason.R2_MOVED_TO_NEW, e.event_id, e.event_type, e.occurred_at, 1)

    for key, item, whose in items:
        before = (s, len(audit), last)
        if last is None or key > last:
            last = key
        if isinstance(item, PresenceEntry):
            assert whose is not None
            if whose != s.assignee_id:
                continue
            s = s.assignee_signed_out()
            if s.queue is Queue.NEW and settings.enabled_at(item.occurred_at):
                unassign_by_rule(
                    Reason.R1_SIGNED_OUT, item.event_id, item.event_type, item.occurred_at, 0
                )
            continue
        if isinstance(item, Decision):
            if item.decision_id in applied:
                continue
            applied.add(item.decision_id)
            audit.append(
                AuditEntry(
                    AuditKind.AUTO_UNASSIGNED,
                    item.occurred_at,
                    "routing",
                    item.cause_event_id,
                    item.cause_event_type,
                    previous_assignee_id=item.previous_assignee_id,
                    reason=item.reason,
                    decision_id=item.decision_id,
                )
            )
            if s.assignment_id == item.assignment_id:
                s = s.unassigned(item.occurred_at)
            continue
        assert isinstance(item, ConversationEntry)
        e = item
        if s.queue is None:
            audit.append(
                AuditEntry(
                    AuditKind.CREATED,
                    e.occurred_at,
                    e.actor,
                    e.event_id,
                    e.event_type,
                    to_queue=Queue.NEW,
                )
            )
            s = s.in_queue(Queue.NEW, e.occurred_at)
        if e.kind is EntryKind.INBOUND:
            move(Queue.NEW, e)
            r2_check(e)
        elif e.kind is EntryKind.FOLLOW_UP:
            if s.queue in (Queue.PENDING, Queue.RESOLVED):
                move(Queue.NEW, e)
                r2_check(e)
        elif e.kind is EntryKind.OUTBOUND:
            if s.queue is Queue.NEW:
                move(Queue.PENDING, e)
        elif e.kind in (EntryKind.ASSIGNED, EntryKind.AUTO_ASSIGNED):
            assert e.assignee_id is not None
            signed_in = _signed_in(timelines.get(e.assignee_id, ()), e.sort_key)
            if e.kind is EntryKind.AUTO_ASSIGNED:
                audit.append(
                    AuditEntry(
                        AuditKind.AUTO_ASSIGNED,
                        e.occurred_at,
                        e.actor,
                        e.cause_event_id or e.event_id,
                        e.cause_event_type or e.event_type,
                        assignee_id=e.assignee_id,
                        previous_assignee_id=s.assignee_id,
                        decision_id=e.event_id,
                        assign_reason=e.reason,
                    )
                )
            else:
                audit.append(
                    AuditEntry(
                        AuditKind.ASSIGNED,
                        e.occurred_at,
                        e.actor,
                        e.event_id,
                        e.event_type,
                        assignee_id=e.assignee_id,
                        previous_assignee_id=s.assignee_id,
                    )
                )
            s = s.assigned(e.assignee_id, e.event_id, e.occurred_at, e.actor, signed_in)
            if e.kind is EntryKind.AUTO_ASSIGNED and not signed_in:
                # PRODUCT.md §4: never to a signed-out agent. The owner accepted it before the
                # sign-out was recorded (a presence event later than the progress claimed);
                # once the timeline has it, the assignment is taken back, whatever the
                # remove-assignment setting, and the conversation waits again.
                s = s.assignee_signed_out()
                unassign_by_rule(Reason.R1_SIGNED_OUT, e.event_id, e.event_type, e.occurred_at, 1)
        elif e.kind is EntryKind.UNASSIGNED:
            unassign_by_hand(e)
        elif e.kind is EntryKind.RESOLVED:
            move(Queue.RESOLVED, e)
            unassign_by_hand(e)
    trail = tuple(audit)
    point = None
    at_state, at_audit, at = (s, len(audit), last) if checkpoint is None else checkpoint
    if until is None and at is not None:
        point = FoldPoint(
            snapshot,
            at_state,
            trail if at_audit == len(trail) else trail[:at_audit],
            at,
            len(entry_list),
            len(fact_list) + len(new),
            # without a pending decision every item sorts at or before the end
            checkpoint is None,
            tuple((agent, _timeline_prefix(tl, at)) for agent, tl in timelines.items()),
            settings.prefix(at[0]),
        )
    return FoldResult(s, tuple(new), trail, pending_at, point)


def agents_of(entries: Iterable[ConversationEntry], facts: Iterable[Decision] = ()) -> set[str]:
    """Every agent whose presence can matter to this conversation."""
    agents = {e.assignee_id for e in entries if e.assignee_id is not None}
    agents.update(f.previous_assignee_id for f in facts)
    return agents


def channel_of(entries: Iterable[ConversationEntry]) -> str | None:
    """The channel of the latest message among ``entries`` (None: no message)."""
    latest: ConversationEntry | None = None
    for e in entries:
        if e.channel_id is not None and (latest is None or e.sort_key > latest.sort_key):
            latest = e
    return latest.channel_id if latest is not None else None


@dataclass
class ConversationLog:
    """What an owner keeps per conversation: its snapshot, the events after its horizon
    (deduplicated) and the facts after it."""

    org_id: str
    conversation_id: str
    partition: int
    entries: dict[str, ConversationEntry] = field(default_factory=dict)
    facts: dict[str, Decision] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    #: Where the latest fold of this log ended (``fold(resume=...)``).
    point: FoldPoint | None = None
    #: ``oldest_at``, once computed; reset by every change of ``entries`` or ``facts`` (made
    #: only through ``add``, ``add_fact`` and ``advance``).
    _oldest: datetime | None = field(default=None, init=False, repr=False, compare=False)
    _oldest_known: bool = field(default=False, init=False, repr=False, compare=False)
    #: ``agents()`` and the snapshot it was computed with; reset with ``_oldest_known``.
    _agents: tuple[Snapshot | None, frozenset[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def add(self, entry: ConversationEntry) -> bool:
        """False if this event id was already known (a duplicate delivery)."""
        if entry.event_id in self.entries:
            return False
        self.entries[entry.event_id] = entry
        self._oldest_known, self._agents = False, None
        return True

    @property
    def oldest_at(self) -> datetime | None:
        """Event time of the earliest entry or fact after the horizon (None: settled):
        compaction's choice reads it for every conversation in memory each run."""
        if not self._oldest_known:
            times = [e.occurred_at for e in self.entries.values()]
            times += [f.occurred_at for f in self.facts.values()]
            self._oldest, self._oldest_known = min(times, default=None), True
        return self._oldest

    def advance(self, snapshot: Snapshot) -> None:
        """Take ``snapshot`` (a later horizon): what it folded in leaves the log."""
        self.snapshot = snapshot
        self.point = None  # folded from the new snapshot next time
        self.entries = {i: e for i, e in self.entries.items() if e.occurred_at > snapshot.horizon}
        self.facts = {i: f for i, f in self.facts.items() if f.occurred_at > snapshot.horizon}
        self._oldest_known, self._agents = False, None

    def behind_horizon(self, at: datetime) -> bool:
        """Stamped at or before the snapshot's horizon: it cannot be folded any more."""
        return self.snapshot is not None and at <= self.snapshot.horizon

    def add_fact(self, decision: Decision) -> None:
        if not self.behind_horizon(decision.occurred_at):
            self.facts[decision.decision_id] = decision
            self._oldest_known, self._agents = False, None

    @property
    def version(self) -> int:
        """Everything known of the conversation (events + decisions): only grows."""
        folded = self.snapshot.folded if self.snapshot is not None else 0
        return folded + len(self.entries) + len(self.facts)

    @property
    def channel_id(self) -> str | None:
        """The channel of its latest message (None: no message yet)."""
        latest = channel_of(self.entries.values())
        if latest is None and self.snapshot is not None:
            return self.snapshot.channel_id
        return latest

    @property
    def latest_at(self) -> datetime | None:
        """Event time of the latest event known (the snapshot's horizon counts as known)."""
        times = [e.occurred_at for e in self.entries.values()]
        if self.snapshot is not None:
            times.append(self.snapshot.horizon)
        return max(times, default=None)

    def agents(self) -> frozenset[str]:
        """Every agent whose presence can matter to the next fold (read several times per
        fold: cached until ``entries``, ``facts`` or the snapshot change)."""
        cached = self._agents
        if cached is not None and cached[0] is self.snapshot:
            return cached[1]
        agents = agents_of(self.entries.values(), self.facts.values())
        if self.snapshot is not None and self.snapshot.state.assignee_id is not None:
            agents.add(self.snapshot.state.assignee_id)
        self._agents = (self.snapshot, frozenset(agents))
        return self._agents[1]

    @property
    def settled(self) -> bool:
        """Nothing after the horizon: the snapshot alone is the conversation."""
        return not self.entries and not self.facts


def compact(
    lg: ConversationLog,
    horizon: datetime,
    *,
    timelines: Mapping[str, Sequence[PresenceEntry]],
    settings: SettingsHistory,
) -> Snapshot | None:
    """The conversation's snapshot at ``horizon`` (None: nothing to fold in, or a decision up
    to the horizon is not taken yet: the owner folds it first and compacts later)."""
    old = lg.snapshot
    if old is not None and horizon <= old.horizon:
        return None
    entries = [e for e in lg.entries.values() if e.occurred_at <= horizon]
    facts = [f for f in lg.facts.values() if f.occurred_at <= horizon]
    if not entries and not facts:
        return None
    result = fold(
        lg.org_id,
        lg.conversation_id,
        entries,
        timelines=timelines,
        settings=settings,
        facts=facts,
        final_until=horizon,
        snapshot=old,
        until=horizon,
    )
    if result.new_decisions or not result.state.exists:
        return None
    times = [e.occurred_at for e in entries]
    if old is not None and old.latest_at is not None:
        times.append(old.latest_at)
    return Snapshot(
        result.state,
        result.audit,
        horizon,
        folded=(old.folded if old is not None else 0) + len(entries) + len(facts),
        channel_id=channel_of(entries) or (old.channel_id if old is not None else None),
        latest_at=max(times, default=None),
        archive=old.archive if old is not None else None,
    )
