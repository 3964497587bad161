"""The in-memory ``PresenceStore`` of the unit tests. Several replicas can share one
``Database``; with a ``Scheduler`` every call is a scheduling point and a test decides which
pending call completes next, so the interleavings of replicas' reads and writes are chosen by
hypothesis, not by the event loop. Without one, calls run straight through.

Semantics follow the MongoDB adapter: unique inserts (a duplicate is a lost claim), exact
``_id`` reads, sessions tagged with the replica that last wrote them, pending markers that
name their replica and event time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from presence_service.domain.model import (
    AgentRef,
    Session,
    SessionEnd,
    Transition,
    transition_key,
)
from presence_service.service_layer.ports import (
    AgentAvailability,
    Lease,
    OutboxRecord,
    ReplicaFloor,
)


class Scheduler:
    """Every store call parks at ``point()``; ``run`` releases one parked call at a time, the
    one ``choose(n)`` picks among the ``n`` parked, and then lets the released one run until
    it parks again (or finishes)."""

    def __init__(self, choose: Callable[[int], int], on_step: Callable[[], None]) -> None:
        self._choose = choose
        self._on_step = on_step
        self._parked: list[asyncio.Future[None]] = []

    async def point(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._parked.append(future)
        await future

    async def _settle(self) -> None:
        for _ in range(50):  # everything runnable reaches its next point (no real I/O)
            await asyncio.sleep(0)

    async def run(self, tasks: list[asyncio.Task[None]], max_steps: int) -> None:
        for _ in range(max_steps):
            await self._settle()
            if all(t.done() for t in tasks) or not self._parked:
                break
            self._on_step()
            self._parked.pop(self._choose(len(self._parked))).set_result(None)
        for t in tasks:
            t.cancel()
        for future in self._parked:
            future.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]


@dataclass
class Database:
    """The shared state of every replica's ``FakeStore``."""

    #: None: calls run straight through (plain unit tests, one replica)
    sched: Scheduler | None = None
    sessions: dict[str, Session] = field(default_factory=dict)
    ends: dict[str, SessionEnd] = field(default_factory=dict)
    outbox: dict[str, OutboxRecord] = field(default_factory=dict)
    transitions: dict[str, Transition] = field(default_factory=dict)
    pending: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # replica, time
    floors: dict[str, ReplicaFloor] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    availability: dict[AgentRef, AgentAvailability] = field(default_factory=dict)
    state: dict[str, datetime] = field(default_factory=dict)


def _seq_key(agent: AgentRef, seq: int) -> str:
    return transition_key(agent, seq)


def seq(t: Transition) -> int:
    return t.seq


class FakeStore:
    """One replica's view of the shared ``Database`` (by default a database of its own)."""

    def __init__(self, db: Database | None = None, replica_id: str = "self") -> None:
        self.db = db or Database()
        self.replica_id = replica_id

    async def _step(self) -> None:
        if self.db.sched is not None:
            await self.db.sched.point()

    # what unit tests look at
    @property
    def sessions(self) -> dict[str, Session]:
        return self.db.sessions

    @property
    def ends(self) -> dict[str, SessionEnd]:
        return self.db.ends

    @property
    def outbox(self) -> dict[str, OutboxRecord]:
        return self.db.outbox

    def log(self, agent: AgentRef) -> list[Transition]:
        """The agent's transitions, oldest first."""
        return sorted((t for t in self.db.transitions.values() if t.agent == agent), key=seq)

    def agents(self) -> set[AgentRef]:
        """Every agent with a transition."""
        return {t.agent for t in self.db.transitions.values()}

    # sessions
    async def insert_session(
        self, session: Session, claim: tuple[Transition, OutboxRecord] | None = None
    ) -> bool:
        await self._step()
        assert session.session_id not in self.db.sessions
        self.db.sessions[session.session_id] = session
        return True if claim is None else await self.claim_transition(*claim)

    async def insert_session_then_head(self, session: Session, known: Transition) -> Transition:
        await self.insert_session(session)
        return await self.head_after(session.agent, known) or known

    async def get_session(self, session_id: str) -> Session | None:
        await self._step()
        return self.db.sessions.get(session_id)

    async def touch_session(
        self, session_id: str, last_heartbeat: datetime, expires_at: datetime
    ) -> None:
        await self._step()
        if (s := self.db.sessions.get(session_id)) is not None:
            self.db.sessions[session_id] = replace(
                s, last_heartbeat=last_heartbeat, expires_at=expires_at, replica=self.replica_id
            )

    async def persist_heartbeats(self, progress: list[tuple[str, datetime, datetime]]) -> set[str]:
        missing: set[str] = set()
        for sid, beat, expires in progress:
            if sid in self.db.sessions:
                await self.touch_session(sid, beat, expires)
            else:
                missing.add(sid)
        return missing

    async def delete_session(self, session_id: str) -> None:
        await self._step()
        self.db.sessions.pop(session_id, None)

    async def sessions_of(self, agents: list[AgentRef]) -> list[Session]:
        await self._step()
        return [s for s in self.db.sessions.values() if s.agent in agents]

    async def overdue_sessions(self, before: datetime, limit: int) -> list[Session]:
        await self._step()
        return [s for s in self.db.sessions.values() if s.expires_at < before][:limit]

    # ends
    async def claim_end(self, end: SessionEnd) -> bool:
        await self._step()
        if end.session_id in self.db.ends:
            return False
        self.db.ends[end.session_id] = end
        return True

    async def get_end(self, session_id: str) -> SessionEnd | None:
        await self._step()
        return self.db.ends.get(session_id)

    async def ended_ids(self, session_ids: list[str]) -> set[str]:
        await self._step()
        return {s for s in session_ids if s in self.db.ends}

    async def ends_since(self, since: Mapping[AgentRef, datetime]) -> list[SessionEnd]:
        await self._step()
        ends = self.db.ends.values()
        return [e for e in ends if e.agent in since and e.ended_at >= since[e.agent]]

    # transitions / outbox
    def _latest(self, agent: AgentRef) -> Transition | None:
        seq, latest = 0, None
        while (t := self.db.transitions.get(_seq_key(agent, seq + 1))) is not None:
            seq, latest = seq + 1, t
        return latest

    async def head(self, agent: AgentRef) -> Transition | None:
        await self._step()
        return self._latest(agent)

    async def head_after(self, agent: AgentRef, known: Transition | None) -> Transition | None:
        await self._step()
        latest = self._latest(agent)
        return latest if latest is not None and (known is None or latest.seq > known.seq) else known

    async def head_hint(self, agent: AgentRef) -> Transition | None:
        await self._step()
        return None  # no hints here: readers probe from the start

    async def head_hints(self, limit: int) -> list[Transition]:
        await self._step()
        return []  # no hints here (see ``head_hint``)

    async def heads(self, agents: list[AgentRef]) -> dict[AgentRef, Transition]:
        await self._step()
        return {a: t for a in agents if (t := self._latest(a)) is not None}

    async def claim_transition(self, transition: Transition, record: OutboxRecord) -> bool:
        await self._step()
        self.db.pending.setdefault(
            record.key, (self.replica_id, record.occurred_at or record.created_at)
        )
        await self._step()
        if record.key in self.db.outbox:
            return False
        self.db.outbox[record.key] = record
        self.db.transitions[record.key] = transition
        return True

    async def signed_in_heads(
        self, org_id: str, after_agent_id: str, limit: int
    ) -> list[Transition]:
        await self._step()
        agents = {t.agent for t in self.db.transitions.values() if t.agent.org_id == org_id}
        heads = [t for a in agents if (t := self._latest(a)) is not None and t.signed_in]
        heads = sorted((t for t in heads if t.agent.agent_id > after_agent_id), key=str)
        return heads[:limit]

    async def insert_outbox(self, record: OutboxRecord) -> None:
        await self._step()
        self.db.pending[record.key] = (self.replica_id, record.occurred_at or record.created_at)
        self.db.outbox[record.key] = record

    async def get_outbox(self, key: str) -> OutboxRecord | None:
        await self._step()
        return self.db.outbox.get(key)

    async def unpublished(
        self, created_before: datetime, limit: int, *, full_scan: bool = False
    ) -> list[OutboxRecord]:
        await self._step()
        found = [
            r
            for k in self.db.pending
            if (r := self.db.outbox.get(k)) is not None
            and not r.published
            and r.created_at < created_before
        ]
        return sorted(found, key=lambda r: r.key)[:limit]

    async def mark_published(self, key: str, at: datetime) -> None:
        await self._step()
        if (r := self.db.outbox.get(key)) is not None:
            self.db.outbox[key] = dataclasses.replace(r, published=True)
        self.db.pending.pop(key, None)

    # availability
    async def set_availability(self, agent: AgentRef, value: AgentAvailability) -> None:
        await self._step()
        self.db.availability[agent] = value

    async def availabilities(self, agents: list[AgentRef]) -> dict[AgentRef, AgentAvailability]:
        await self._step()
        return {a: v for a in agents if (v := self.db.availability.get(a)) is not None}

    # liveness
    async def mark_alive(self, now: datetime) -> datetime | None:
        await self._step()
        previous = self.db.state.get("alive")
        self.db.state["alive"] = now
        return previous

    async def outage_resumed_at(self) -> datetime | None:
        await self._step()
        return self.db.state.get("outage")

    async def record_outage_resumed(self, at: datetime) -> None:
        await self._step()
        self.db.state["outage"] = at

    async def prune(self, cutoff: datetime, limit: int) -> tuple[int, int]:
        await self._step()
        return 0, 0

    # progress
    async def write_floor(self, floor: datetime, at: datetime) -> None:
        await self._step()
        self.db.floors[self.replica_id] = ReplicaFloor(self.replica_id, floor, at)

    async def drop_floor(self, replica_id: str) -> None:
        await self._step()
        self.db.floors.pop(replica_id, None)

    async def floors(self) -> list[ReplicaFloor]:
        await self._step()
        return list(self.db.floors.values())

    async def orphan_floor(self, replica_id: str) -> datetime | None:
        await self._step()
        found = [s.expires_at for s in self.db.sessions.values() if s.replica == replica_id]
        found += [at for r, at in self.db.pending.values() if r == replica_id]
        return min(found) if found else None

    async def take_lease(
        self,
        name: str,
        holder: str,
        now: datetime,
        until: datetime,
        seen: Mapping[str, datetime] | None = None,
    ) -> bool:
        await self._step()
        current = self.db.leases.get(name)
        if current is not None and current.holder != holder and current.until > now:
            return False
        await self._step()
        self.db.leases[name] = Lease(holder, until, dict(seen or {}))
        return True

    async def lease(self, name: str) -> Lease | None:
        await self._step()
        return self.db.leases.get(name)
