"""Presence rules: sessions, their expiry, and the agent's sign-in / sign-out transitions.

Pure code: no I/O. Times are aware UTC datetimes passed in by the caller.

The agent's presence is a **transition log**: transition ``n`` (1, 2, 3, ...) alternates
between *signed in* (odd) and *signed out* (even). A transition is claimed by inserting it
under a unique key ``(agent, n)``; the insert that wins emits the event, a loser re-reads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from inbox_kit.ids import name_based_id

#: Namespace of the deterministic event ids (uuid5 of the outbox key).
EVENT_ID_NAMESPACE = uuid.UUID("6f1d6a52-59a4-4c55-a7c4-7d3c0b1f5e11")

KEY_SEPARATOR = "\x1f"


class EndReason(StrEnum):
    EXPLICIT = "explicit"
    EXPIRED = "expired"
    FORCED = "forced"


@dataclass(frozen=True)
class AgentRef:
    org_id: str
    agent_id: str

    @property
    def key(self) -> str:
        """Storage key of the agent (org-scoped: agent ids of two orgs never mix)."""
        return f"{self.org_id}{KEY_SEPARATOR}{self.agent_id}"


@dataclass(frozen=True)
class Session:
    session_id: str
    agent: AgentRef
    started_at: datetime
    last_heartbeat: datetime
    expires_at: datetime
    client_description: str = ""
    #: The replica that last wrote the session's heartbeat progress ("" = unknown).
    replica: str = ""
    #: The agent's teams at sign-in (the token's ``teams`` claim).
    teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionEnd:
    """The fact that a session ended; claimed once per session (unique by session id)."""

    session_id: str
    agent: AgentRef
    reason: EndReason
    ended_at: datetime


@dataclass(frozen=True)
class Transition:
    """One entry of an agent's transition log."""

    agent: AgentRef
    seq: int
    signed_in: bool
    occurred_at: datetime
    session_id: str
    reason: EndReason | None = None
    #: Sign-ins: the teams of the session that made it so.
    teams: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return transition_key(self.agent, self.seq)

    @property
    def event_id(self) -> str:
        return event_id_for(self.key)


def transition_key(agent: AgentRef, seq: int) -> str:
    return f"{agent.key}{KEY_SEPARATOR}t{seq:012d}"


def event_id_for(outbox_key: str) -> str:
    """Deterministic event id: any re-publish of the same stored fact carries the same id."""
    return name_based_id(EVENT_ID_NAMESPACE, outbox_key)


@dataclass(frozen=True)
class Timing:
    heartbeat_interval: timedelta
    session_timeout: timedelta
    #: Extra slack before *another* actor (sweeper, a sign-out of a sibling session) declares a
    #: session expired; absorbs clock skew between replicas and in-flight heartbeats. The
    #: recorded end time is still ``expires_at`` (last heartbeat + timeout).
    expiry_grace: timedelta
    #: A replica writes a session's heartbeat progress back at most this often (coalesced);
    #: in between, the database may lag the latest heartbeat by up to ``persist_lag``.
    persist_interval: timedelta = timedelta(0)
    #: How often the write-back loop runs (due sessions wait at most this long).
    persist_tick: timedelta = timedelta(0)
    #: The replica serving a session decides its expiry this long after the deadline: room
    #: for another replica's write of a heartbeat it took over just before the deadline.
    handover_grace: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= timedelta(0) or self.session_timeout <= timedelta(0):
            raise ValueError("heartbeat interval and session timeout must be positive")
        if self.session_timeout < self.heartbeat_interval:
            raise ValueError("session timeout must be at least one heartbeat interval")
        if self.persist_lag > timedelta(0) and (
            self.heartbeat_interval + self.persist_lag >= self.session_timeout
        ):
            # see README "Heartbeats": a replica that served a session earlier must write its
            # progress before the replica serving it now could decide on an older heartbeat
            raise ValueError(
                "heartbeat interval + persist interval + persist tick must be below the timeout"
            )

    @property
    def persist_lag(self) -> timedelta:
        """How far the stored heartbeat of a session served by a live replica may lag."""
        return self.persist_interval + self.persist_tick


def deadline(session: Session, resumed_at: datetime | None, timing: Timing) -> datetime:
    """When the session is *decided* expired. After a full service outage (no replica alive)
    sessions get a fresh timeout from the moment the service came back, since clients could
    not heartbeat meanwhile; the recorded end time stays ``expires_at`` (see ``expiry_end``)."""
    if resumed_at is not None:
        return max(session.expires_at, resumed_at + timing.session_timeout)
    return session.expires_at


def is_expired_for_owner(
    session: Session, now: datetime, resumed_at: datetime | None, timing: Timing
) -> bool:
    """A heartbeat arriving after the deadline is too late: the session already expired."""
    return now > deadline(session, resumed_at, timing)


def is_expired_for_others(
    session: Session, now: datetime, resumed_at: datetime | None, timing: Timing
) -> bool:
    """Judged from the *stored* session by an actor that does not serve it: the replica that
    does may hold up to ``persist_lag`` of heartbeat progress not written yet."""
    return now > deadline(session, resumed_at, timing) + timing.persist_lag + timing.expiry_grace


def expiry_end(session: Session) -> SessionEnd:
    """An expired session ended at its last heartbeat + timeout, whenever that is noticed
    (even when the decision was deferred by an outage: a client that is really gone stopped
    then)."""
    return SessionEnd(
        session_id=session.session_id,
        agent=session.agent,
        reason=EndReason.EXPIRED,
        ended_at=session.expires_at,
    )


def next_transition(
    agent: AgentRef,
    head: Transition | None,
    live: list[Session],
    ends_since_head: list[SessionEnd],
) -> Transition | None:
    """The transition the log needs so that it matches the sessions, or None if it matches.

    - live sessions and the head says signed out (or nothing yet) → signed in, at the start of
      the earliest live session (never before the head);
    - no live session and the head says signed in → signed out, at the latest end among the
      sessions that ended since the head (the last session to end), with its reason.
    """
    head_in = head is not None and head.signed_in
    seq = head.seq if head else 0
    floor = head.occurred_at if head else None
    if live and not head_in:
        first = min(live, key=lambda s: (s.started_at, s.session_id))
        at = first.started_at if floor is None else max(first.started_at, floor)
        return Transition(agent, seq + 1, True, at, first.session_id, teams=first.teams)
    if not live and head_in:
        assert head is not None
        if ends_since_head:
            last = max(ends_since_head, key=lambda e: (e.ended_at, e.session_id))
            at, session_id, reason = last.ended_at, last.session_id, last.reason
        else:  # ended sessions are unknown (should not happen): sign out now-ish, explicitly
            at, session_id, reason = head.occurred_at, head.session_id, EndReason.EXPLICIT
        return Transition(agent, seq + 1, False, max(at, head.occurred_at), session_id, reason)
    return None
