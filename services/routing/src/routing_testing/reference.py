"""The reference model: the whole history of an org applied in event-time order.

Written independently of :func:`routing_service.domain.model.fold` (one global simulation of
every agent and conversation, as a person would read PRODUCT.md §1), so that the property
tests compare two formulations of the rules, not one function with itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from routing_service.domain.model import EntryKind, Queue, Reason


@dataclass(frozen=True)
class HistoryEvent:
    """One fact of the history: a conversation event, a presence change or a setting change."""

    event_id: str
    occurred_at: datetime
    kind: str  # an EntryKind value, "signed_in", "signed_out" or "setting"
    conversation_id: str | None = None
    agent_id: str | None = None  # presence subject, or new assignee for "assigned"
    enabled: bool | None = None  # for "setting"

    @property
    def rank(self) -> int:
        return 0 if self.kind in ("signed_in", "signed_out", "setting") else 1


@dataclass
class RefConversation:
    queue: Queue
    assignee: str | None = None
    assignment_id: str | None = None  # event id of the assignment in force
    armed: bool = False  # the assignee signed out since the assignment


@dataclass
class ReferenceResult:
    conversations: dict[str, RefConversation] = field(default_factory=dict)
    decisions: list[tuple[str, str, Reason, str]] = field(default_factory=list)
    # (conversation, previous assignee, reason, cause event id)


def run_reference(history: Iterable[HistoryEvent]) -> ReferenceResult:
    """Apply every event once (duplicates by id ignored), sorted by (occurred_at, rank, id)."""
    unique = {e.event_id: e for e in history}
    events = sorted(unique.values(), key=lambda e: (e.occurred_at, e.rank, e.event_id))
    signed_in: dict[str, bool] = {}
    setting = False
    out = ReferenceResult()
    convs = out.conversations

    def unassign(cid: str, reason: Reason, cause: str) -> None:
        c = convs[cid]
        assert c.assignee is not None
        out.decisions.append((cid, c.assignee, reason, cause))
        c.assignee, c.assignment_id, c.armed = None, None, False

    for e in events:
        if e.kind == "setting":
            setting = bool(e.enabled)
            continue
        if e.kind == "signed_in":
            signed_in[e.agent_id or ""] = True
            continue
        if e.kind == "signed_out":
            agent = e.agent_id or ""
            signed_in[agent] = False
            for cid, c in convs.items():
                if c.assignee == agent:
                    c.armed = True
                    if setting and c.queue is Queue.NEW:  # R1
                        unassign(cid, Reason.R1_SIGNED_OUT, e.event_id)
            continue
        cid = e.conversation_id or ""
        c = convs.setdefault(cid, RefConversation(Queue.NEW))
        kind = EntryKind(e.kind)
        moved_to_new = False
        if kind is EntryKind.INBOUND or (
            kind is EntryKind.FOLLOW_UP and c.queue in (Queue.PENDING, Queue.RESOLVED)
        ):
            c.queue, moved_to_new = Queue.NEW, True
        elif kind is EntryKind.OUTBOUND and c.queue is Queue.NEW:
            c.queue = Queue.PENDING
        elif kind is EntryKind.ASSIGNED:
            # R3: an assignment to a signed-out agent is not armed until they sign out again.
            c.assignee, c.assignment_id, c.armed = e.agent_id, e.event_id, False
        elif kind is EntryKind.UNASSIGNED:
            c.assignee, c.assignment_id, c.armed = None, None, False
        elif kind is EntryKind.RESOLVED:
            c.queue, c.assignee, c.assignment_id, c.armed = Queue.RESOLVED, None, None, False
        if (
            moved_to_new
            and setting
            and c.assignee is not None
            and c.armed
            and not signed_in.get(c.assignee, False)  # R4: signed back in stops R2
        ):
            unassign(cid, Reason.R2_MOVED_TO_NEW, e.event_id)
    return out
