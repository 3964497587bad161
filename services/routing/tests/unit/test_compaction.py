"""Snapshots, compaction, bounded memory and the horizon rule (service layer, in-memory store).

L = 1 minute, compaction lag 0: the horizon of a caught-up partition is now - 2 L.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from routing_service.domain.model import (
    ConversationLog,
    Decision,
    Reason,
    SettingsHistory,
    Snapshot,
    fold,
)
from routing_service.service_layer.owner import BEHIND_HORIZON, BehindHorizon, Compacting
from routing_service.service_layer.translate import conversation_entry
from routing_testing import (
    InMemoryRouting,
    PresenceRecord,
    assigned,
    follow_up,
    inbound,
    outbound,
    progress_mark,
    resolved,
    signed_in,
    signed_out,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ORG = "org-c"
L = timedelta(minutes=1)


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Crash(Exception):
    pass


async def now(r: InMemoryRouting, at: datetime) -> None:
    """Wall clock at ``at``; presence recorded (and relayed) up to it."""
    r.clock.now = at
    await r.recorder.handle([PresenceRecord(0, progress_mark(0, at))])
    await r.recorder.relay()
    await r.deliver_commands()


async def routing() -> InMemoryRouting:
    r = InMemoryRouting(
        1,
        lateness=L,
        instant=False,
        start_time=T0,
        compacting=Compacting(lag=timedelta(0), max_conversations=0),
    )
    await r.start()
    await r.set_setting(ORG, True, T0 - timedelta(days=1))
    return r


async def history(r: InMemoryRouting) -> None:
    """ "old" ends RESOLVED (settled), "held" NEW and assigned to ana (resident)."""
    await r.deliver(signed_in(ORG, "ana", t(0)))
    await r.deliver_commands()
    for event in (
        inbound(ORG, "old", t(1)),
        outbound(ORG, "old", t(2)),
        resolved(ORG, "old", t(3)),
        inbound(ORG, "held", t(1)),
        assigned(ORG, "held", "ana", t(2)),
    ):
        await now(r, event.data.occurred_at)
        await r.deliver(event)


async def test_compaction_folds_the_journal_into_snapshots_and_evicts_settled_ones() -> None:
    r = await routing()
    await history(r)
    assert len(r.store.journal) == 5
    await now(r, t(10))  # horizon t(8)
    assert await r.owner.compact() == 2
    assert r.store.journal == {}
    assert set(r.store.snapshots) == {(ORG, "old"), (ORG, "held")}
    assert r.store.snapshots[(ORG, "held")].snapshot.resident
    assert set(r.store.resident) == {(ORG, "held")}
    # memory bound 0: only what must stay (resident) is kept
    assert set(r.owner.logs) == {(ORG, "held")}
    assert r.state(ORG, "old") == ("RESOLVED", None)
    assert r.state(ORG, "held") == ("NEW", "ana")


async def test_take_over_reads_snapshots_and_resident_ones_are_still_swept() -> None:
    r = await routing()
    await history(r)
    await now(r, t(10))
    await r.owner.compact()
    await r.crash_and_restart()
    assert set(r.owner.logs) == {(ORG, "held")}  # not the settled one
    r.clock.now = t(11)
    await r.deliver(signed_out(ORG, "ana", t(11)))
    await r.deliver_commands()
    await now(r, t(13))
    await r.owner.release_due()
    assert r.state(ORG, "held") == ("NEW", None)
    assert [d.reason for d in r.decisions.published] == [Reason.R1_SIGNED_OUT]
    # an evicted conversation is loaded from its snapshot when an event needs it
    await r.deliver(follow_up(ORG, "old", t(12)))
    assert r.state(ORG, "old") == ("NEW", None)
    audit = r.store.views[(ORG, "old")].audit
    # the trail from before the horizon survives compaction
    assert [(a.kind.value, a.to_queue) for a in audit] == [
        ("created", "NEW"),
        ("queue_moved", "PENDING"),
        ("queue_moved", "RESOLVED"),
        ("queue_moved", "NEW"),
    ]


async def test_an_event_behind_the_horizon_is_refused_and_changes_nothing() -> None:
    r = await routing()
    await history(r)
    await now(r, t(10))
    await r.owner.compact()
    before = BEHIND_HORIZON._value.get()
    late = inbound(ORG, "old", t(5))  # at or before the horizon t(8)
    outcome = await r.deliver(late)
    assert outcome is not None
    assert [(d.event.id, type(e)) for d, e in outcome.refused] == [(late.id, BehindHorizon)]
    assert BEHIND_HORIZON._value.get() == before + 1
    assert r.state(ORG, "old") == ("RESOLVED", None)
    assert not any(k[2] == late.id for k in r.store.journal)
    # just after the horizon it is folded by event time
    fresh = inbound(ORG, "old", t(8.5))
    outcome = await r.deliver(fresh)
    assert outcome is not None and outcome.refused == []
    assert r.state(ORG, "old") == ("NEW", None)


async def test_take_over_reads_the_copies_of_live_snapshots_not_each_snapshot() -> None:
    r = await routing()
    await history(r)
    await now(r, t(10))
    await r.owner.compact()
    assert set(r.store.live) == {(ORG, "held")}  # resident: a take-over loads it
    await r.deliver(follow_up(ORG, "old", t(10.5)))  # evicted: loaded by _id, live again
    assert set(r.store.live) == {(ORG, "held")}  # its copy is written by the next compaction
    await now(r, t(11))
    await r.owner.compact()
    assert set(r.store.live) == {(ORG, "held"), (ORG, "old")}
    assert r.store.live[(ORG, "old")] == r.store.snapshots[(ORG, "old")]
    reads = r.store.snapshot_reads
    await r.crash_and_restart()
    assert r.store.snapshot_reads == reads  # both from their copies
    assert set(r.owner.logs) == {(ORG, "held"), (ORG, "old")}
    assert r.state(ORG, "old") == ("NEW", None)
    # once "old" is settled again (resolved, then compacted) its copy goes
    await r.deliver(resolved(ORG, "old", t(11.5)))
    await now(r, t(14))
    await r.owner.compact()
    assert set(r.store.live) == {(ORG, "held")}
    await r.crash_and_restart()
    assert set(r.owner.logs) == {(ORG, "held")}
    assert r.store.snapshot_reads == reads


async def test_a_copy_the_take_over_does_not_need_is_deleted() -> None:
    r = await routing()
    await history(r)
    await now(r, t(10))
    await r.owner.compact()
    stale = r.store.snapshots[(ORG, "old")]
    r.store.live[(ORG, "old")] = stale  # e.g. a conversation loaded for a refused proposal
    await r.crash_and_restart()
    assert set(r.owner.logs) == {(ORG, "held")}
    await r.owner.compact()
    assert set(r.store.live) == {(ORG, "held")}


async def test_a_new_conversation_costs_no_snapshot_read_an_evicted_one_does() -> None:
    r = await routing()
    await history(r)
    await now(r, t(10))
    await r.owner.compact()
    reads = r.store.snapshot_reads
    await r.deliver(inbound(ORG, "brand-new", t(10)))  # the key filter says "no snapshot"
    assert r.store.snapshot_reads == reads
    await r.deliver(follow_up(ORG, "old", t(10.5)))  # evicted: read by _id
    assert r.store.snapshot_reads == reads + 1
    assert r.state(ORG, "old") == ("NEW", None)


@pytest.mark.parametrize(
    "stage", ["filter", "snapshots", "live", "resident", "decisions", "journal"]
)
async def test_a_crash_inside_a_compaction_step_is_repaired_by_the_next(stage: str) -> None:
    r = await routing()
    await history(r)
    await now(r, t(10))

    def crash_at(write: str) -> None:
        if write == stage:
            raise Crash(write)

    r.store.before_write = crash_at
    with pytest.raises(Crash):
        await r.owner.compact()
    r.store.before_write = None
    await r.crash_and_restart()
    await now(r, t(10.2))  # presence relayed to the new owner
    await r.owner.compact()  # writes what the crashed step left, or the whole step again
    assert r.store.journal == {}
    assert set(r.store.resident) == {(ORG, "held")}
    await r.crash_and_restart()
    assert set(r.owner.logs) == {(ORG, "held")}
    assert r.state(ORG, "held") == ("NEW", "ana")
    assert r.state(ORG, "old") == ("RESOLVED", None)


async def test_a_partition_handed_back_keeps_its_state_unless_another_took_it_over() -> None:
    r = await routing()
    await history(r)
    held = r.owner.logs[(ORG, "held")]
    await r.owner.revoke({0})  # an eager rebalance: everything is given up first
    assert not r.owner.logs
    await r.owner.assign({0})  # ... and handed back: nothing read again
    assert r.owner.last_takeover["kept_partitions"] == 1
    assert r.owner.logs[(ORG, "held")] is held
    r.clock.now = t(11)
    await r.deliver(signed_out(ORG, "ana", t(11)))  # the sweep still finds it (R1)
    await r.deliver_commands()
    await now(r, t(13))
    await r.owner.release_due()
    assert r.state(ORG, "held") == ("NEW", None)
    await r.deliver(assigned(ORG, "held", "ana", t(13.5)))
    # another instance took the partition over meanwhile: its state is read again
    await r.owner.revoke({0})
    await r.store.claim_partitions([0], "another-instance:1")
    await r.owner.assign({0})
    assert r.owner.last_takeover["kept_partitions"] == 0
    assert r.owner.logs[(ORG, "held")] is not held
    assert r.state(ORG, "held") == ("NEW", "ana")
    assert [d.reason for d in r.decisions.published] == [Reason.R1_SIGNED_OUT]


async def test_a_compaction_run_lets_a_batch_in_between_its_chunks() -> None:
    """With the consumer's lock the run takes it one chunk at a time: a batch that asked for
    it during a chunk goes before the next chunk (not after the whole run)."""
    r = InMemoryRouting(
        1,
        lateness=L,
        instant=False,
        start_time=T0,
        compacting=Compacting(lag=timedelta(0), max_conversations=0, chunk=1),
    )
    await r.start()
    await r.set_setting(ORG, True, T0 - timedelta(days=1))
    await history(r)
    await now(r, t(10))
    lock = asyncio.Lock()
    order: list[str] = []
    waiting: list[asyncio.Task[None]] = []

    async def batch() -> None:
        async with lock:
            order.append("batch")

    def note(write: str) -> None:
        if write == "snapshots":
            order.append("chunk")
            if not waiting:
                waiting.append(asyncio.create_task(batch()))

    r.store.before_write = note
    assert await r.owner.compact(lock=lock) == 2
    await asyncio.gather(*waiting)
    assert order == ["chunk", "batch", "chunk"]
    assert r.store.journal == {}
    assert r.state(ORG, "old") == ("RESOLVED", None)
    assert r.state(ORG, "held") == ("NEW", "ana")


async def test_a_compaction_step_lets_a_decision_about_to_become_final_go_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step that would take the lock while a decision is due within about twice its
    expected time lets the lock go and waits until a fold took the due decisions."""
    r = await routing()
    await history(r)
    await now(r, t(10))
    await r.deliver(signed_out(ORG, "ana", t(10)))
    r.clock.now = t(11) - timedelta(milliseconds=10)  # R1 final at sign-out + L: 10 ms away
    await r.deliver_commands()
    assert list(r.owner.due) == [(ORG, "held")]
    order: list[str] = []
    due_within = r.owner._due_within
    choose = r.owner._choose
    publish = r.decisions.publish_decisions

    async def noting_due(seconds: float) -> bool:
        soon = await due_within(seconds)
        order.append(f"due soon: {soon}")
        return soon

    def noting_choice(*args: object) -> object:
        order.append("compaction")
        return choose(*args)  # type: ignore[arg-type]

    async def noting_publish(*args: object) -> None:
        order.append("decision")
        await publish(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(r.owner, "_due_within", noting_due)
    monkeypatch.setattr(r.owner, "_choose", noting_choice)
    monkeypatch.setattr(r.decisions, "publish_decisions", noting_publish)
    lock = asyncio.Lock()
    run = asyncio.create_task(r.owner.compact(lock=lock))
    for _ in range(1000):  # until the run's first step has looked and let the lock go
        if order:
            break
        await asyncio.sleep(0)
    assert order == ["due soon: True"]
    async with lock:  # what ``release_when_final`` does once the decision is final
        r.clock.now = t(11) + timedelta(milliseconds=1)
        assert (await r.owner.release_due()).decisions
    await run
    assert order[:3] == ["due soon: True", "decision", "compaction"]
    assert r.state(ORG, "held") == ("NEW", None)


def test_the_oldest_time_a_log_holds_follows_every_entry_fact_and_snapshot() -> None:
    """Compaction's choice reads ``oldest_at`` (cached) instead of scanning each log."""
    lg = ConversationLog(ORG, "c-old", 0)
    assert lg.oldest_at is None
    first = conversation_entry(inbound(ORG, "c-old", t(10)))
    assert first is not None and lg.add(first)
    assert lg.oldest_at == t(10)
    late = conversation_entry(inbound(ORG, "c-old", t(5)))  # arrives later, stamped earlier
    assert late is not None and lg.add(late)
    assert lg.oldest_at == t(5)
    assert not lg.add(late) and lg.oldest_at == t(5)  # a duplicate changes nothing
    result = fold(ORG, "c-old", list(lg.entries.values()), timelines={}, settings=SettingsHistory())
    lg.advance(Snapshot(result.state, result.audit, t(7)))
    assert lg.oldest_at == t(10)  # what the snapshot folded in left the log
    lg.add_fact(
        Decision("d-1", ORG, "c-old", "ana", "a-1", Reason.R2_MOVED_TO_NEW, "x", "inbound", t(8), 0)
    )
    assert lg.oldest_at == t(8)
