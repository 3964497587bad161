"""Progress marks against every interleaving hypothesis can find: two replicas on one
(in-memory) store, the real handlers, relay and marks code, each store call a scheduling
point. The contract: a ``PresenceProgressed`` with watermark W is never appended to a partition
before a transition with ``occurred_at`` <= W.

The scenario is the one that broke it under the e2e scale test: a replica died and left
sessions behind; a *follower* replica's sweeper ends them at their stored deadline (a time
long past) while the *holder* of the marks lease publishes marks from the floors and the dead
replica's leftovers. The follower also serves sessions of its own that expire meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from fake_store import Database, FakeStore, Scheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from inbox_kit.auth import Principal, Role
from presence_service.domain.model import AgentRef, Session, Timing, Transition
from presence_service.service_layer import handlers, marks, outbox
from presence_service.service_layer.handlers import Presence, transition_record
from presence_service.service_layer.marks import MarkState, MarkTiming
from presence_service.service_layer.ports import Lease, OutboxRecord, ReplicaFloor
from presence_service.service_layer.progress import MARKS_LEASE

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TIMING = Timing(
    heartbeat_interval=timedelta(seconds=0.5),
    session_timeout=timedelta(seconds=1.5),
    expiry_grace=timedelta(seconds=0.2),
    persist_interval=timedelta(seconds=0.4),
    persist_tick=timedelta(seconds=0.1),
    handover_grace=timedelta(seconds=0.05),
)
STEPS_MS = (0, 1, 5, 20, 60)


class Partition:
    """What a consumer of one partition reads, in append order."""

    def __init__(self, sched: Scheduler, db: Database) -> None:
        self.sched, self.db = sched, db
        self.log: list[tuple[str, datetime]] = []

    async def publish(self, record: OutboxRecord) -> None:
        await self.sched.point()
        self.log.append(("transition", self.db.transitions[record.key].occurred_at))

    async def publish_marks(self, watermark: datetime) -> None:
        await self.sched.point()
        self.log.append(("mark", watermark))

    def overtaken(self) -> list[tuple[datetime, datetime]]:
        """(transition time, highest earlier mark) for every transition a mark overtook."""
        highest: datetime | None = None
        found = []
        for kind, at in self.log:
            if kind == "mark":
                highest = at if highest is None else max(highest, at)
            elif highest is not None and at <= highest:
                found.append((at, highest))
        return found


def _orphan(db: Database, i: int, stored_deadline: datetime) -> None:
    """A session the dead replica served (its sign-in published long ago)."""
    agent = AgentRef("org", f"orphan-{i}")
    start = T0 - timedelta(minutes=1)
    db.sessions[f"o{i}"] = Session(f"o{i}", agent, start, start, stored_deadline, replica="dead")
    t = Transition(agent, 1, True, start, f"o{i}")
    db.transitions[t.key] = t
    db.outbox[t.key] = replace(transition_record(t, start), published=True)


@settings(max_examples=100, deadline=None)
@given(
    rnd=st.randoms(use_true_random=False),
    orphans=st.integers(1, 3),
    own_deadline_ms=st.integers(0, 400),
    slow_ms=st.sampled_from([0, 100, 250]),
)
def test_no_mark_overtakes_a_transition_whatever_the_interleaving(
    rnd: random.Random, orphans: int, own_deadline_ms: int, slow_ms: int
) -> None:
    asyncio.run(_scenario(rnd, orphans, own_deadline_ms, slow_ms))


async def _scenario(rnd: random.Random, orphans: int, own_deadline_ms: int, slow_ms: int) -> None:
    now = [T0]

    def advance() -> None:
        now[0] += timedelta(milliseconds=rnd.choice(STEPS_MS))

    sched = Scheduler(rnd.randrange, advance)
    db = Database(sched)
    partition = Partition(sched, db)
    db.floors["dead"] = ReplicaFloor("dead", T0 - timedelta(seconds=9), T0 - timedelta(seconds=9))
    for i in range(orphans):
        _orphan(db, i, T0 - timedelta(seconds=3) + timedelta(milliseconds=i))
    db.leases[MARKS_LEASE] = Lease("holder", T0 + timedelta(hours=1), {})

    def replica(name: str) -> Presence:
        return Presence(
            store=FakeStore(db, name),
            timing=TIMING,
            clock=lambda: now[0],
            replica_id=name,
            replica_ttl=timedelta(seconds=2),
        )

    holder, follower = replica("holder"), replica("follower")
    # the follower serves a session of its own that stops heartbeating: expires from memory
    own_start = T0 + timedelta(milliseconds=own_deadline_ms) - TIMING.session_timeout
    own = Session(
        "mine",
        AgentRef("org", "own"),
        own_start,
        own_start,
        own_start + TIMING.session_timeout,
        replica="follower",
    )
    db.sessions[own.session_id] = own
    follower.live.add(own, persisted=own_start)
    signed_in = Transition(own.agent, 1, True, own_start, own.session_id)
    db.transitions[signed_in.key] = signed_in
    db.outbox[signed_in.key] = replace(transition_record(signed_in, own_start), published=True)
    for p in (holder, follower):  # known as replicas before the run (bootstrap)
        start_floor = handlers.own_floor(p, now[0])
        p.progress.reported(start_floor)
        db.floors[p.replica_id] = ReplicaFloor(p.replica_id, start_floor, now[0])

    timing = MarkTiming(
        interval=timedelta(milliseconds=40),
        replica_ttl=timedelta(seconds=2),
        lease_ttl=timedelta(hours=1),
        slow_interval=timedelta(milliseconds=slow_ms),
    )

    async def marks_of(p: Presence, publisher: Partition | None, rounds: int) -> None:
        state = MarkState()
        for _ in range(rounds):
            await marks.mark_round(p, publisher, timing, state)

    async def sweeps() -> None:
        for _ in range(2):
            await handlers.sweep_once(follower)

    async def expiries() -> None:
        for _ in range(6):
            await handlers.expire_overdue(follower)
            await db.sched.point()

    async def relay() -> None:
        while True:
            record = await follower.claimed.get()
            await outbox.publish_batch(follower, partition, [record])

    work = [
        asyncio.create_task(marks_of(holder, partition, 12)),
        asyncio.create_task(marks_of(follower, None, 12)),
        asyncio.create_task(sweeps()),
        asyncio.create_task(expiries()),
    ]
    relaying = asyncio.create_task(relay())
    await sched.run([*work, relaying], max_steps=3_000)
    assert all(t.done() and not t.cancelled() for t in work), "a scenario task did not finish"
    assert partition.overtaken() == [], partition.log
    # the scenario really happened: the orphans were ended and published
    ended = [t for t in db.transitions.values() if not t.signed_in]
    assert len([t for t in ended if t.agent.agent_id.startswith("orphan")]) == orphans
    assert [kind for kind, _ in partition.log].count("transition") == len(ended)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), slow_ms=st.sampled_from([40, 120, 250]))
def test_a_replica_joining_a_holder_alone_is_never_overtaken(seed: int, slow_ms: int) -> None:
    """The holder, alone, reads the floors only every ``slow_ms``; a replica that starts
    meanwhile signs an agent in and out as soon as it may (``handlers.join``)."""
    with patch.object(handlers, "JOIN_POLL", timedelta(0)):  # polls are scheduling points
        # a seed, not hypothesis' randoms: the join's polls draw more than it allows
        asyncio.run(_joining(random.Random(seed), slow_ms))


async def _joining(rnd: random.Random, slow_ms: int) -> None:
    now = [T0]

    def advance() -> None:
        now[0] += timedelta(milliseconds=rnd.choice(STEPS_MS))

    sched = Scheduler(rnd.randrange, advance)
    db = Database(sched)
    partition = Partition(sched, db)
    db.leases[MARKS_LEASE] = Lease("holder", T0 + timedelta(hours=1), {})
    # a replica that stopped gracefully: not a reason to read every round
    db.floors["gone"] = ReplicaFloor("gone", T0 - timedelta(seconds=30), marks.GONE)

    def replica(name: str, *, joined: bool) -> Presence:
        return Presence(
            store=FakeStore(db, name),
            timing=TIMING,
            clock=lambda: now[0],
            replica_id=name,
            replica_ttl=timedelta(seconds=2),
            joined=joined,
        )

    holder, joiner = replica("holder", joined=True), replica("joiner", joined=False)
    start_floor = handlers.own_floor(holder, now[0])
    holder.progress.reported(start_floor)
    db.floors["holder"] = ReplicaFloor("holder", start_floor, now[0])
    timing = MarkTiming(
        interval=timedelta(milliseconds=40),
        replica_ttl=timedelta(seconds=2),
        lease_ttl=timedelta(seconds=1),  # renewed (with what the holder saw) every 250 ms
        slow_interval=timedelta(milliseconds=slow_ms),
    )
    finished, alone, serving = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def holder_marks() -> None:
        state = MarkState()
        while not finished.is_set():
            await marks.mark_round(holder, partition, timing, state)
            if not state.others:
                alone.set()
        await marks.mark_round(holder, partition, timing, state)

    async def joining() -> None:
        await alone.wait()  # the holder has read the floors and found itself alone
        for _ in range(rnd.randrange(4)):
            await sched.point()
        try:
            await handlers.report_floor(joiner)  # bootstrap: floor, then join, then serve
            await handlers.join(joiner)
            serving.set()  # its background loops start (bootstrap)
            agent = Principal("org", "newcomer", Role.AGENT)
            session = await handlers.sign_in(joiner, agent)
            await handlers.sign_out(joiner, agent, session.session_id)
        finally:
            finished.set()

    async def relay() -> None:
        while True:
            record = await joiner.claimed.get()
            await outbox.publish_batch(joiner, partition, [record])

    async def joiner_marks() -> None:
        await serving.wait()
        state = MarkState()
        while not finished.is_set():
            await marks.mark_round(joiner, None, timing, state)
            await sched.point()  # a round with nothing due does not suspend

    work = [asyncio.create_task(holder_marks()), asyncio.create_task(joining())]
    background = [asyncio.create_task(relay()), asyncio.create_task(joiner_marks())]
    await sched.run([*work, *background], max_steps=3_000)
    assert all(t.done() and not t.cancelled() for t in work), "a scenario task did not finish"
    assert partition.overtaken() == [], partition.log
    assert [kind for kind, _ in partition.log].count("transition") == 2
