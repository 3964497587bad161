"""What the service layer needs from storage and from the broker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from inbox_contracts.events import Availability

from presence_service.domain.model import AgentRef, Session, SessionEnd, Transition


@dataclass(frozen=True)
class OutboxRecord:
    """An event stored before it is published (the transition claim *is* the outbox entry)."""

    key: str
    topic: str
    kafka_key: bytes
    event_id: str
    event_type: str
    payload: bytes
    created_at: datetime
    #: Outbox key of the agent's previous transition: published first, to keep per-agent order.
    prev_key: str | None = None
    published: bool = False
    #: Transitions: the event's ``occurred_at`` (holds the progress watermark until published).
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ReplicaFloor:
    """A replica's progress floor as it last wrote it."""

    replica_id: str
    floor: datetime
    at: datetime


@dataclass(frozen=True)
class Lease:
    """A named lease as stored: who holds it until when, and (the progress marks lease) the
    liveness time of each replica's floor as the holder last read it (``marks``: a replica
    that joins claims nothing before the holder has seen it)."""

    holder: str
    until: datetime
    seen: Mapping[str, datetime]


@dataclass(frozen=True)
class AgentAvailability:
    availability: Availability
    changed_at: datetime


class PresenceStore(Protocol):
    # sessions
    async def insert_session(
        self, session: Session, claim: tuple[Transition, OutboxRecord] | None = None
    ) -> bool:
        """Store a new session; with ``claim``, claim that transition once the session is
        stored (one group commit: a sign-in's only write). False: the claim was lost (the
        session is stored either way)."""
        ...

    async def insert_session_then_head(self, session: Session, known: Transition) -> Transition:
        """Store a new session of an agent known to have transition ``known``, then read the
        agent's log head from there (the read starts after the session is stored)."""
        ...

    async def get_session(self, session_id: str) -> Session | None: ...
    async def touch_session(
        self, session_id: str, last_heartbeat: datetime, expires_at: datetime
    ) -> None: ...
    async def persist_heartbeats(self, progress: list[tuple[str, datetime, datetime]]) -> set[str]:
        """Write (session id, last heartbeat, expires at) back; returns the ids no longer
        stored (ended meanwhile, maybe by another replica)."""

    async def delete_session(self, session_id: str) -> None: ...
    async def sessions_of(self, agents: list[AgentRef]) -> list[Session]: ...
    async def overdue_sessions(self, before: datetime, limit: int) -> list[Session]: ...
    # session ends (claimed once per session)
    async def claim_end(self, end: SessionEnd) -> bool: ...
    async def get_end(self, session_id: str) -> SessionEnd | None: ...
    async def ended_ids(self, session_ids: list[str]) -> set[str]: ...
    async def ends_since(self, since: Mapping[AgentRef, datetime]) -> list[SessionEnd]:
        """The ends of each agent's sessions at or after its ``since`` (one query)."""
        ...

    # transition log + outbox
    async def head(self, agent: AgentRef) -> Transition | None: ...
    async def head_after(self, agent: AgentRef, known: Transition | None) -> Transition | None:
        """The agent's head, probing forward from ``known`` (a transition known to exist, or
        None: from the start): ``_id`` reads of the next numbers until one is missing."""
        ...

    async def head_hint(self, agent: AgentRef) -> Transition | None:
        """The stored hint of the agent's head: a lower bound (``_id`` read, no probing)."""
        ...

    async def head_hints(self, limit: int) -> list[Transition]:
        """Up to ``limit`` stored head hints, any agents (one scan, at startup)."""
        ...

    async def heads(self, agents: list[AgentRef]) -> dict[AgentRef, Transition]: ...
    async def claim_transition(self, transition: Transition, record: OutboxRecord) -> bool: ...
    async def signed_in_heads(
        self, org_id: str, after_agent_id: str, limit: int
    ) -> list[Transition]: ...
    async def insert_outbox(self, record: OutboxRecord) -> None: ...
    async def get_outbox(self, key: str) -> OutboxRecord | None: ...
    async def unpublished(
        self, created_before: datetime, limit: int, *, full_scan: bool = False
    ) -> list[OutboxRecord]: ...
    async def mark_published(self, key: str, at: datetime) -> None: ...
    # availability
    async def set_availability(self, agent: AgentRef, value: AgentAvailability) -> None: ...
    async def availabilities(self, agents: list[AgentRef]) -> dict[AgentRef, AgentAvailability]: ...
    # service liveness (outage detection)
    async def mark_alive(self, now: datetime) -> datetime | None: ...
    async def outage_resumed_at(self) -> datetime | None: ...
    async def record_outage_resumed(self, at: datetime) -> None: ...
    # retention
    async def prune(self, cutoff: datetime, limit: int) -> tuple[int, int]: ...
    # progress marks
    async def write_floor(self, floor: datetime, at: datetime) -> None: ...
    async def drop_floor(self, replica_id: str) -> None: ...
    async def floors(self) -> list[ReplicaFloor]: ...
    async def orphan_floor(self, replica_id: str) -> datetime | None: ...
    async def take_lease(
        self,
        name: str,
        holder: str,
        now: datetime,
        until: datetime,
        seen: Mapping[str, datetime] | None = None,
    ) -> bool:
        """Hold the lease until ``until`` (storing ``seen``) if it is free, expired or ours."""
        ...

    async def lease(self, name: str) -> Lease | None: ...


class EventPublisher(Protocol):
    async def publish(self, record: OutboxRecord) -> None: ...


class ProgressPublisher(Protocol):
    async def publish_marks(self, watermark: datetime) -> None:
        """One progress mark on every partition of the presence topic."""
        ...
