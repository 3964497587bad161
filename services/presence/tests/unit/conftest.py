"""An in-memory ``PresenceStore`` and a manual clock (unit tests only; no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from presence_service.domain.model import AgentRef, Session, SessionEnd, Transition
from presence_service.service_layer.ports import AgentAvailability, OutboxRecord, ReplicaFloor


@dataclass
class ManualClock:
    """Wall-clock time that moves only when told."""

    now: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakePresenceStore:
    sessions: dict[str, Session] = field(default_factory=dict)
    ends: dict[str, SessionEnd] = field(default_factory=dict)
    transitions: dict[AgentRef, list[Transition]] = field(default_factory=dict)
    outbox: dict[str, OutboxRecord] = field(default_factory=dict)
    availability: dict[AgentRef, AgentAvailability] = field(default_factory=dict)
    replica_floors: dict[str, ReplicaFloor] = field(default_factory=dict)
    state: dict[str, datetime] = field(default_factory=dict)
    leases: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    # sessions
    async def insert_session(self, session: Session) -> None:
        assert session.session_id not in self.sessions
        self.sessions[session.session_id] = session

    async def get_session(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def touch_session(
        self, session_id: str, last_heartbeat: datetime, expires_at: datetime
    ) -> None:
        if session_id in self.sessions:
            self.sessions[session_id] = replace(
                self.sessions[session_id], last_heartbeat=last_heartbeat, expires_at=expires_at
            )

    async def persist_heartbeats(self, progress: list[tuple[str, datetime, datetime]]) -> set[str]:
        """Returns the sessions no longer stored, as the MongoDB adapter does."""
        missing = {session_id for session_id, _, _ in progress if session_id not in self.sessions}
        for session_id, beat, expires in progress:
            await self.touch_session(session_id, beat, expires)
        return missing

    async def delete_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    async def sessions_of(self, agents: list[AgentRef]) -> list[Session]:
        return [s for s in self.sessions.values() if s.agent in agents]

    async def overdue_sessions(self, before: datetime, limit: int) -> list[Session]:
        return [s for s in self.sessions.values() if s.expires_at < before][:limit]

    # ends
    async def claim_end(self, end: SessionEnd) -> bool:
        return self.ends.setdefault(end.session_id, end) is end

    async def get_end(self, session_id: str) -> SessionEnd | None:
        return self.ends.get(session_id)

    async def ended_ids(self, session_ids: list[str]) -> set[str]:
        return {i for i in session_ids if i in self.ends}

    async def ends_since(self, since: Mapping[AgentRef, datetime]) -> list[SessionEnd]:
        return [e for e in self.ends.values() if e.agent in since and e.ended_at >= since[e.agent]]

    # transitions and outbox
    async def head(self, agent: AgentRef) -> Transition | None:
        log = self.transitions.get(agent, [])
        return log[-1] if log else None

    async def head_after(self, agent: AgentRef, known: Transition | None) -> Transition | None:
        head = await self.head(agent)
        return head if head is not None and (known is None or head.seq > known.seq) else known

    async def head_hint(self, agent: AgentRef) -> Transition | None:
        return None  # no hints here: readers probe from the start

    async def heads(self, agents: list[AgentRef]) -> dict[AgentRef, Transition]:
        return {a: t for a in agents if (t := await self.head(a)) is not None}

    async def claim_transition(self, transition: Transition, record: OutboxRecord) -> bool:
        if record.key in self.outbox:
            return False  # the unique ``_id`` of the transition: someone else claimed it
        self.outbox[record.key] = record
        self.transitions.setdefault(transition.agent, []).append(transition)
        return True

    async def signed_in_heads(
        self, org_id: str, after_agent_id: str, limit: int
    ) -> list[Transition]:
        heads = [log[-1] for a, log in self.transitions.items() if a.org_id == org_id and log]
        signed_in = [t for t in heads if t.signed_in and t.agent.agent_id > after_agent_id]
        return sorted(signed_in, key=lambda t: t.agent.agent_id)[:limit]

    async def insert_outbox(self, record: OutboxRecord) -> None:
        self.outbox.setdefault(record.key, record)

    async def get_outbox(self, key: str) -> OutboxRecord | None:
        return self.outbox.get(key)

    async def unpublished(
        self, created_before: datetime, limit: int, *, full_scan: bool = False
    ) -> list[OutboxRecord]:
        due = [r for r in self.outbox.values() if not r.published and r.created_at < created_before]
        return sorted(due, key=lambda r: r.key)[:limit]

    async def mark_published(self, key: str, at: datetime) -> None:
        self.outbox[key] = replace(self.outbox[key], published=True)

    # availability
    async def set_availability(self, agent: AgentRef, value: AgentAvailability) -> None:
        self.availability[agent] = value

    async def availabilities(self, agents: list[AgentRef]) -> dict[AgentRef, AgentAvailability]:
        return {a: self.availability[a] for a in agents if a in self.availability}

    # liveness of the whole service
    async def mark_alive(self, now: datetime) -> datetime | None:
        before = self.state.get("alive")
        self.state["alive"] = now
        return before

    async def outage_resumed_at(self) -> datetime | None:
        return self.state.get("outage")

    async def record_outage_resumed(self, at: datetime) -> None:
        self.state["outage"] = at

    async def prune(self, cutoff: datetime, limit: int) -> tuple[int, int]:
        return 0, 0

    # progress floors and leases
    async def write_floor(self, floor: datetime, at: datetime) -> None:
        self.replica_floors["self"] = ReplicaFloor("self", floor, at)

    async def drop_floor(self, replica_id: str) -> None:
        self.replica_floors.pop(replica_id, None)

    async def floors(self) -> list[ReplicaFloor]:
        return list(self.replica_floors.values())

    async def orphan_floor(self, replica_id: str) -> datetime | None:
        found = self.replica_floors.get(replica_id)
        return found.floor if found else None

    async def take_lease(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        current = self.leases.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self.leases[name] = (holder, until)
        return True


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> FakePresenceStore:
    return FakePresenceStore()
