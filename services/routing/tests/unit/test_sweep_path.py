"""A sweep's many R1 decisions: a short first slice, the views after the decisions, the
latency split (``service_layer.latency``) observed for each decision, and background steps
that let a waiting batch go first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from routing_service.adapters.memory import InMemoryStore, InMemoryViews, RecordingDecisionPublisher
from routing_service.domain.model import Decision
from routing_service.service_layer.latency import marker, split_since
from routing_service.service_layer.owner import (
    FIRST_SLICE,
    FOLD_SLICE,
    Compacting,
    ConversationOwner,
)
from routing_testing import InMemoryRouting, assigned, inbound, progress_mark, signed_in, signed_out

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ORG = "org-sweep"
L = timedelta(milliseconds=500)
N = FIRST_SLICE + FOLD_SLICE + 10


def ms(n: float) -> datetime:
    return T0 + timedelta(milliseconds=n)


async def swept_routing() -> InMemoryRouting:
    """N NEW conversations assigned to ana, who signs out at 1,000 ms (R1 pending on L)."""
    r = InMemoryRouting(1, presence_partitions=1, lateness=L, instant=False, start_time=T0)
    await r.start()
    await r.set_setting(ORG, True, T0 - timedelta(days=1))
    await r.deliver(signed_in(ORG, "ana", ms(0)))
    events = []
    for i in range(N):
        events += [inbound(ORG, f"c-{i}", ms(10)), assigned(ORG, f"c-{i}", "ana", ms(20))]
    await r.deliver_batch(events)
    r.clock.now = ms(1000)
    await r.deliver(signed_out(ORG, "ana", ms(1000)))
    r.clock.now = ms(1050)
    await r.deliver(progress_mark(0, ms(1050)), partition=0)
    await r.recorder.relay()
    await r.deliver_commands()
    await r.owner.release_due()
    return r


async def test_a_sweeps_decisions_go_out_in_a_short_first_slice_and_views_follow_them() -> None:
    r = await swept_routing()
    assert r.decisions.published == []  # pending until the streams are complete past 1,000 + L
    assert len(r.owner.due) == N
    publishes: list[int] = []
    views_then: list[int] = []
    record = r.decisions.publish_decisions

    async def noting(decisions: Sequence[Decision]) -> None:
        publishes.append(len(decisions))
        views_then.append(sum(1 for v in r.store.views.values() if v.state.assignee_id is None))
        await record(decisions)

    r.decisions.publish_decisions = noting  # type: ignore[method-assign]
    before = marker()
    r.clock.now = ms(1501)
    await r.owner.release_due()
    assert publishes == [FIRST_SLICE, FOLD_SLICE, N - FIRST_SLICE - FOLD_SLICE]
    # no conversation's view showed it unassigned before every decision was on the topic
    assert views_then == [0, 0, 0]
    assert all(r.state(ORG, f"c-{i}") == ("NEW", None) for i in range(N))
    split = split_since(before)
    for stage in ("queued", "final_wait", "work"):
        assert split[stage][0] == N, stage
    assert split["record"][0] == 3
    assert split["publish"][0] == 3


async def test_a_decision_final_at_its_first_fold_waits_nothing_for_finality() -> None:
    r = InMemoryRouting(1, presence_partitions=1)  # every decision final at once
    await r.start()
    await r.set_setting(ORG, True, T0 - timedelta(days=1))
    await r.deliver(signed_in(ORG, "bo", ms(0)))
    await r.deliver_batch([inbound(ORG, "c", ms(10)), assigned(ORG, "c", "bo", ms(20))])
    before = marker()
    await r.deliver(signed_out(ORG, "bo", ms(30)))
    await r.deliver_commands()
    assert len(r.decisions.published) == 1
    split = split_since(before)
    count, mean, _, _ = split["final_wait"]
    assert (count, mean) == (1, 0.0)


async def test_a_background_step_lets_the_batch_waiting_for_the_lock_go_first() -> None:
    store = InMemoryStore()
    waiting = True
    owner = ConversationOwner(
        store,
        RecordingDecisionPublisher(),
        InMemoryViews(store),
        compacting=Compacting(yield_seconds=30),
        input_waiting=lambda: waiting,
    )
    lock = asyncio.Lock()
    step = asyncio.create_task(owner.acquire_yielding(lock, 0.01))
    for _ in range(20):  # the loop's turns: the step found input waiting and let go
        await asyncio.sleep(0)
    assert not step.done() and not lock.locked()
    async with lock:
        await owner.handle([])  # the batch that took the input
    waiting = False
    await asyncio.wait_for(step, 5)
    assert lock.locked()  # the step holds it now
    lock.release()
    # nothing waiting: a step takes the lock at once
    await asyncio.wait_for(owner.acquire_yielding(lock, 0.01), 5)
    assert lock.locked()
