"""The conversation owner's side of automatic assignment (pure).

The owner is the one writer of a conversation, so it is where a proposal is checked against
the truth: it lands only if the conversation is still in the very waiting period the proposal
was made for and the agent is still signed in per the owner's presence timeline. What the
dispatcher needs to know of a conversation is its ``DispatchView``, derived from the fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from routing_service.domain.audit import WaitingReplay, archive_of, replay
from routing_service.domain.dispatch import Refusal
from routing_service.domain.model import (
    AuditEntry,
    AuditKind,
    ConversationEntry,
    ConversationLog,
    ConversationState,
    EntryKind,
    FoldResult,
    PresenceEntry,
    Queue,
    channel_of,
)
from routing_service.domain.values import value

__all__ = ["channel_of"]

AUTO_ASSIGNED_TYPE = "inbox.routing.auto_assigned.v1"
AUTO_UNASSIGNED_TYPE = "inbox.routing.auto_unassigned.v1"
ROUTING_ACTOR = "routing"
NEVER_SIGNED_IN = datetime.min.replace(tzinfo=UTC)


@value
class DispatchView:
    """The part of a conversation's state that automatic assignment depends on."""

    queue: str
    assignee_id: str | None
    channel_id: str | None
    waiting_since: datetime | None
    waiting_cause: str | None
    version: int
    #: The event behind the current state: what started the waiting, else the latest change.
    cause: tuple[str, str]
    #: Event time of the latest change.
    at: datetime

    @property
    def waiting(self) -> bool:
        return self.waiting_since is not None

    def same_state(self, other: DispatchView | None) -> bool:
        return other is not None and (
            self.queue,
            self.assignee_id,
            self.channel_id,
            self.waiting_since,
            self.waiting_cause,
        ) == (
            other.queue,
            other.assignee_id,
            other.channel_id,
            other.waiting_since,
            other.waiting_cause,
        )


def waiting_period(
    state: ConversationState,
    audit: Sequence[AuditEntry],
    archived: WaitingReplay | None = None,
) -> tuple[datetime, str, AuditEntry] | None:
    """When the current waiting period (NEW and unassigned) started and what started it
    (None: not waiting). Replays the audit trail (from ``archived``, the replay of the
    entries archived before it: ``domain.audit``)."""
    if state.queue is not Queue.NEW or state.assignee_id is not None:
        return None
    start = replay(audit, archived).waiting_since
    if start is None and audit:  # the replay disagrees with the fold: trust the fold
        start = audit[-1]
    if start is None:
        return None
    return (start.occurred_at, f"{start.kind.value}:{start.decision_id or start.event_id}", start)


def dispatch_view(lg: ConversationLog, result: FoldResult) -> DispatchView:
    s = result.state
    period = waiting_period(s, result.audit, archive_of(lg.snapshot).carry)
    behind = period[2] if period else (result.audit[-1] if result.audit else None)
    if behind is None:
        cause = ("", "")
    elif behind.kind is AuditKind.AUTO_UNASSIGNED and behind.decision_id:
        cause = (behind.decision_id, AUTO_UNASSIGNED_TYPE)
    else:
        cause = (behind.event_id, behind.event_type)
    at = s.updated_at or latest_event_time(lg) or datetime.now(UTC)
    return DispatchView(
        queue=s.queue.value if s.queue is not None else Queue.NEW.value,
        assignee_id=s.assignee_id,
        channel_id=lg.channel_id,
        waiting_since=period[0] if period else None,
        waiting_cause=period[1] if period else None,
        version=lg.version,
        cause=cause,
        at=at,
    )


def latest_event_time(lg: ConversationLog) -> datetime | None:
    """Event time of the latest event known of the conversation."""
    return lg.latest_at


def signed_out_at(timeline: Sequence[PresenceEntry]) -> datetime | None:
    """When the agent signed out, if their latest presence is a sign-out (or never seen)."""
    if not timeline:
        return NEVER_SIGNED_IN
    last = max(timeline, key=lambda p: p.sort_key)
    return None if last.signed_in else last.occurred_at


def review(
    *,
    view: DispatchView | None,
    waiting_cause: str,
    channel_id: str | None,
    agent_signed_out_at: datetime | None,
    agent_held: int = 0,
    capacity: int | None = None,
) -> Refusal | None:
    """None: accept. The conversation must still be in the proposal's waiting period, on the
    channel the proposal was judged for (a new channel can mean another team); the agent
    signed in; and what the agent holds among the owner's conversations (``agent_held``)
    below the proposal's ``capacity``: the dispatcher counted everything it had seen, this
    catches a hand assignment it had not seen yet."""
    if (
        view is None
        or not view.waiting
        or view.waiting_cause != waiting_cause
        or view.channel_id != channel_id
    ):
        return Refusal.NOT_WAITING
    if agent_signed_out_at is not None:
        return Refusal.AGENT_SIGNED_OUT
    if capacity is not None and agent_held >= capacity:
        return Refusal.AGENT_AT_CAPACITY
    return None


def auto_assignment(
    *,
    proposal_id: str,
    agent_id: str,
    reason: str,
    cause_event_id: str,
    cause_event_type: str,
    proposed_at: datetime,
    known: Sequence[datetime | None],
) -> ConversationEntry:
    """The journal entry of an accepted proposal, timed after everything the owner knows that
    it was judged on (the conversation's latest event, the agent's latest presence): the owner
    decides now, so the fold must not place it before a sign-in it has seen (an R1 on a
    sign-out before that sign-in would take it away again). Strictly after: at an equal time
    the event id would decide the order."""
    at = proposed_at
    for t in known:
        if t is not None and at <= t:
            at = t + timedelta(microseconds=1)
    return ConversationEntry(
        proposal_id,
        AUTO_ASSIGNED_TYPE,
        EntryKind.AUTO_ASSIGNED,
        at,
        ROUTING_ACTOR,
        agent_id,
        reason=reason,
        cause_event_id=cause_event_id,
        cause_event_type=cause_event_type,
    )
