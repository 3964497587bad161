"""In-memory sessions (coalesced heartbeats, exact deadlines) and the progress-floor rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_service.domain.live import LiveSessions
from presence_service.domain.model import AgentRef, Session
from presence_service.service_layer.ports import ReplicaFloor
from presence_service.service_layer.progress import (
    TICK,
    FloorReports,
    ProgressFloor,
    global_watermark,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=45)
PERSIST = timedelta(seconds=15)
AGENT = AgentRef("org", "agent")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_session(sid: str, start: float) -> Session:
    return Session(sid, AGENT, at(start), at(start), at(start) + TIMEOUT)


def test_heartbeats_stay_in_memory_until_the_persist_interval() -> None:
    live = LiveSessions(TIMEOUT, PERSIST)
    live.add(new_session("s", 0), persisted=at(0))
    for t in (5, 10, 14):
        live.beat("s", at(t))
    assert live.due_persists(at(14), limit=100) == []  # written at most once per interval
    [due] = live.due_persists(at(15), limit=100)
    assert due.last_heartbeat == at(14) and due.deadline == at(14) + TIMEOUT
    live.persisted(due, due.last_heartbeat)
    assert live.due_persists(at(100), limit=100) == []  # nothing new since
    live.beat("s", at(20))
    assert live.due_persists(at(28), limit=100) == []
    assert [e.session.session_id for e in live.due_persists(at(29), limit=100)] == ["s"]


def test_deadline_follows_the_latest_heartbeat_and_decides_after_the_grace() -> None:
    live = LiveSessions(TIMEOUT, PERSIST)
    live.add(new_session("a", 0), persisted=at(0))
    live.add(new_session("b", 1), persisted=at(1))
    live.beat("a", at(30))
    grace = timedelta(milliseconds=250)
    assert live.overdue(at(46) + grace, grace) == [live.get("b")]  # a moved on, b did not
    assert live.earliest_deadline() == at(46)  # b is being decided: still holds
    live.remove("b")
    assert live.earliest_deadline() == at(75)
    assert live.overdue(at(75), grace) == []  # within the grace: not yet
    [a] = live.overdue(at(75) + grace, grace)
    live.keep(a)  # e.g. the check found another replica serving it: decided later
    assert live.earliest_deadline() == at(75)


def steps_of(
    ops: list[str], delays: st.SearchStrategy[Any], max_size: int
) -> st.SearchStrategy[list[tuple[str, int, Any]]]:
    """Random operations on five sessions, each after a random delay."""
    return st.lists(st.tuples(st.sampled_from(ops), st.integers(0, 4), delays), max_size=max_size)


@settings(max_examples=200, deadline=None)
@given(steps_of(["add", "beat", "remove", "check", "keep"], st.integers(0, 120), 40))
def test_the_expiry_tick_skips_a_round_only_when_it_would_find_nothing(
    steps: list[tuple[str, int, int]],
) -> None:
    live = LiveSessions(TIMEOUT, PERSIST)
    grace = timedelta(milliseconds=250)
    now = 0
    for op, n, dt in steps:
        now += dt
        sid = f"s{n}"
        if op == "add" and sid not in live:
            live.add(new_session(sid, now), persisted=at(now))
        elif op == "beat":
            live.beat(sid, at(now))
        elif op == "remove":
            live.remove(sid)
        elif op == "keep" and (entry := live.get(sid)) is not None and entry.deciding:
            live.keep(entry)
        elif op == "check":
            may = live.may_be_overdue(at(now), grace)
            found = live.overdue(at(now), grace)
            assert may or not found  # a skipped round would have found nothing


def test_global_watermark_waits_for_live_replicas_and_for_what_dead_ones_left() -> None:
    now, ttl = at(100), timedelta(seconds=5)
    floors = [
        ReplicaFloor("me", at(99), at(99)),
        ReplicaFloor("live", at(98), at(99.9)),
        ReplicaFloor("dead", at(50), at(60)),
    ]
    # the dead one's leftovers not looked at yet: its last floor holds
    assert global_watermark(at(100), "me", floors, {}, now, ttl) == at(50)
    # an orphaned session ends at its stored deadline 97: hold there
    assert (
        global_watermark(at(100), "me", floors, {"dead": at(97)}, now, ttl) == at(97) - TICK
    )  # it may carry exactly 97
    # nothing left: only live floors count
    assert global_watermark(at(100), "me", floors, {"dead": None}, now, ttl) == at(98)


@settings(max_examples=300, deadline=None)
@given(steps_of(["sign_in", "beat", "tick", "sign_out", "ack"], st.floats(0.0, 20.0), 60))
def test_floor_never_passes_a_transition_not_yet_published(
    steps: list[tuple[str, int, float]],
) -> None:
    """A simulated replica: sign-ins/sign-outs (held from their start), heartbeats, expiry
    at the exact deadline, publish acks. At every step the floor is monotone and at or below
    the occurred_at of every transition claimed and not yet acknowledged, and of every live
    session's deadline."""
    live = LiveSessions(TIMEOUT, PERSIST)
    floor = ProgressFloor()
    now = T0
    pending: dict[str, datetime] = {}
    last_floor = floor.floor(now, None)
    counter = 0
    for kind, n, dt in steps:
        sid = f"s{n}"
        if kind == "tick":
            now += timedelta(seconds=dt)
        elif kind == "sign_in" and sid not in live:
            with floor.hold(now):
                live.add(Session(sid, AGENT, now, now, now + TIMEOUT), persisted=now)
                counter += 1
                floor.claiming(f"t{counter}", now)
                pending[f"t{counter}"] = now
        elif kind == "beat" and (entry := live.get(sid)) is not None and not entry.deciding:
            if now <= entry.deadline:
                live.beat(sid, now)
        elif kind == "sign_out" and sid in live:
            with floor.hold(now):
                live.remove(sid)
                counter += 1
                floor.claiming(f"t{counter}", now)
                pending[f"t{counter}"] = now
        elif kind == "ack" and pending:
            key = sorted(pending)[n % len(pending)]
            floor.published(key)
            del pending[key]
        for entry in live.overdue(now, timedelta(0)):  # the expirer: end at the deadline
            with floor.hold(entry.deadline):
                counter += 1
                floor.claiming(f"t{counter}", entry.deadline)
                pending[f"t{counter}"] = entry.deadline
                live.remove(entry.session.session_id)
        current = floor.floor(now, live.earliest_deadline())
        assert current >= last_floor
        assert all(current < t for t in pending.values())
        undecided = [live.get(f"s{i}") for i in range(5)]
        assert all(current < e.deadline for e in undecided if e is not None)
        last_floor = current


async def test_floor_reports_serialize_and_share_a_write_that_started_after_the_call() -> None:
    reports = FloorReports()
    gate = asyncio.Event()
    writes: list[str] = []

    async def write(name: str) -> None:
        writes.append(name)
        await gate.wait()

    first = asyncio.create_task(reports.report(lambda: write("first")))
    await asyncio.sleep(0)  # "first" is in flight: later callers need a write after it
    second = asyncio.create_task(reports.report(lambda: write("second")))
    third = asyncio.create_task(reports.report(lambda: write("third")))
    forced = asyncio.create_task(reports.report(lambda: write("forced"), always=True))
    for _ in range(5):
        await asyncio.sleep(0)
    assert writes == ["first"]  # serialized: nothing else while it is in flight
    gate.set()
    await asyncio.gather(first, second, third, forced)
    # one write served both callers that queued behind "first"; the forced one always writes
    assert writes == ["first", "second", "forced"]
