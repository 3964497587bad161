"""Decisions wait until final, and no longer: presence progress marks, conversation-stream
progress (heads, and c - L once complete as of c), the fallback without marks, the Kafka
completeness probe, and automatic assignment held until presence has progressed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from inbox_contracts import CloudEvent
from routing_service.adapters.kafka import CompletenessProbe
from routing_service.domain.model import ConversationLog, SettingsHistory, fold
from routing_service.domain.progress import MarkTracker, PresenceProgress, stream_progress
from routing_service.service_layer.auto_assign import AutoAssigner
from routing_service.service_layer.presence import MisplacedMark, PresenceRecord
from routing_service.service_layer.translate import conversation_entry
from routing_testing import (
    InMemoryRouting,
    assigned,
    inbound,
    outbound,
    progress_mark,
    signed_in,
    signed_out,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ORG = "org-e"
L = timedelta(milliseconds=500)


def ms(n: float) -> datetime:
    return T0 + timedelta(milliseconds=n)


async def live() -> InMemoryRouting:
    """One partition each, the clock at T0, the setting on, ana signed in and assigned."""
    r = InMemoryRouting(1, presence_partitions=1, lateness=L, instant=False, start_time=T0)
    await r.start()
    await r.set_setting(ORG, True, T0 - timedelta(days=1))
    await r.deliver(signed_in(ORG, "ana", ms(0)))
    await r.deliver_batch([inbound(ORG, "c", ms(10)), assigned(ORG, "c", "ana", ms(20))])
    return r


async def mark(r: InMemoryRouting, at: datetime) -> None:
    r.clock.now = max(r.clock.now, at)
    await r.deliver(progress_mark(0, at), partition=0)
    await r.recorder.relay()
    await r.deliver_commands()
    await r.owner.release_due()


async def test_a_sign_in_200ms_late_prevents_the_r2_the_reference_does_not_make() -> None:
    r = await live()
    await r.deliver_batch([outbound(ORG, "c", ms(30), agent="ana")])  # PENDING: no R1
    await r.deliver(signed_out(ORG, "ana", ms(100)))
    await mark(r, ms(150))
    r.clock.now = ms(3000)
    trigger = inbound(ORG, "c", ms(3000))  # R2 if she were still signed out
    await r.deliver_batch([trigger])
    assert r.decisions.published == [] and r.owner.due  # waits for presence progress
    # presence has not promised 2800 yet: the sign-in at 2800 arrives 200 ms late
    await r.deliver(signed_in(ORG, "ana", ms(2800)))
    await mark(r, ms(3100))
    await r.drain()
    assert r.decisions.published == []
    assert r.state(ORG, "c") == ("NEW", "ana")


async def test_an_outbound_200ms_late_prevents_the_r1_the_reference_does_not_make() -> None:
    r = await live()
    out = signed_out(ORG, "ana", ms(1200))
    r.clock.now = ms(1200)
    await r.deliver(out)
    await mark(r, ms(1250))
    assert r.owner.due  # R1 waits for the conversation streams to pass 1200
    r.clock.now = ms(1400)
    await r.owner.release_due()
    await r.deliver_batch([outbound(ORG, "c", ms(1000), agent="ana")])  # 200 ms late
    r.clock.now = ms(2000)
    await r.owner.release_due()
    assert r.decisions.published == [] and not r.owner.due
    assert r.state(ORG, "c") == ("PENDING", "ana")


async def test_r1_is_taken_once_the_streams_passed_sign_out_plus_l_and_no_later() -> None:
    r = await live()
    r.clock.now = ms(1200)
    await r.deliver(signed_out(ORG, "ana", ms(1200)))
    await mark(r, ms(1250))
    r.clock.now = ms(1700)  # now - L == the sign-out: an event stamped 1200 may still come
    await r.owner.release_due()
    assert r.decisions.published == []
    r.clock.now = ms(1701)
    await r.owner.release_due()
    [d] = r.decisions.published
    assert d.occurred_at == ms(1200)
    assert r.state(ORG, "c") == ("NEW", None)


async def test_a_stream_head_past_the_decision_makes_it_final_before_l() -> None:
    r = await live()
    r.clock.now = ms(1200)
    await r.deliver(signed_out(ORG, "ana", ms(1200)))
    await mark(r, ms(1250))
    # both conversation inputs of the partition moved past 1200: nothing older can come
    await r.deliver_batch([inbound(ORG, "x", ms(1210)), assigned(ORG, "x", "bob", ms(1220))])
    [d] = r.decisions.published
    assert d.conversation_id == "c"


async def test_decisions_wait_for_every_presence_partition() -> None:
    progress = PresenceProgress()
    progress.observe(2, {0: ms(100)})
    assert progress.value() is None
    progress.observe(2, {1: ms(50), 0: ms(80)})  # the maximum per partition is kept
    assert progress.value() == ms(50)


def test_a_partition_without_marks_falls_back_to_its_completeness_minus_l() -> None:
    tracker = MarkTracker(timeout=timedelta(seconds=1), lateness=L)
    tracker.assigned({0, 1}, ms(0))
    tracker.mark(1, ms(400), ms(500))
    assert tracker.progress(ms(900), {0: ms(900), 1: ms(900)}) == {1: ms(400)}
    later = ms(2000)
    # complete as of what the consumer last heard from the broker, not as of now
    complete = ms(1700)
    fallback = complete - L - timedelta(microseconds=1)
    assert tracker.progress(later, {0: complete, 1: complete}) == {0: fallback, 1: fallback}
    assert tracker.progress(later, {0: None, 1: None}) == {1: ms(400)}  # lagging: no guess


def test_stream_progress_is_its_head_or_its_completeness_minus_l() -> None:
    head = ms(100)
    assert stream_progress(head, complete_as_of=None, lateness=L) == head
    assert stream_progress(None, complete_as_of=None, lateness=L) is None
    assert stream_progress(head, complete_as_of=ms(5000), lateness=L) == ms(4500) - (
        timedelta(microseconds=1)
    )
    assert stream_progress(ms(4800), complete_as_of=ms(5000), lateness=L) == ms(4800)


async def test_a_mark_on_the_wrong_partition_is_refused() -> None:
    r = InMemoryRouting(1, presence_partitions=2, lateness=L, instant=False, start_time=T0)
    record = PresenceRecord(1, progress_mark(0, ms(100)))
    [(refused, error)] = await r.recorder.handle([record])
    assert refused is record and isinstance(error, MisplacedMark)


class _FetchState:
    """What aiokafka keeps per assigned partition (the fields the probe reads)."""

    def __init__(self, position: int, highwater: int, timestamp: int) -> None:
        self.has_valid_position = True
        self.position, self.highwater, self.timestamp = position, highwater, timestamp


class _FakeLoop:
    def __init__(self, state: _FetchState) -> None:
        assignment = SimpleNamespace(tps={TopicPartition("t", 0)}, state_value=lambda _: state)
        self.consumer = SimpleNamespace(
            _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)),
        )


def epoch_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def test_completeness_is_the_previous_fetch_response_and_never_moves_without_one() -> None:
    state = _FetchState(position=5, highwater=5, timestamp=epoch_ms(ms(100)))
    probe = CompletenessProbe(_FakeLoop(state))  # type: ignore[arg-type]
    assert await probe("t", 0) is None  # one response: the request behind it is unknown
    state.timestamp = epoch_ms(ms(150))
    assert await probe("t", 0) == ms(100)
    # no response for a long time (a starved process): no later completeness, however late
    # it is now
    assert await probe("t", 0) == ms(100)
    state.timestamp, state.highwater = epoch_ms(ms(900)), 6  # a record not handed out yet
    assert await probe("t", 0) is None
    state.position = 6
    assert await probe("t", 0) == ms(150)


async def test_a_conversation_presence_may_not_have_reached_yet_is_held_by_the_dispatcher() -> None:
    published: list[CloudEvent[Any]] = []

    class Publisher:
        async def publish_dispatch_inputs(self, events: Sequence[CloudEvent[Any]]) -> None:
            published.extend(events)

        async def publish_auto_assigned(self, events: Sequence[CloudEvent[Any]]) -> None:
            raise AssertionError("no assignment here")

    async def no_timelines(_: object) -> dict[Any, Any]:
        return {}

    assigner = AutoAssigner(Publisher(), no_timelines)
    for cid, presence_final, hold in (("c", ms(150), ms(200)), ("d", ms(200), None)):
        lg = ConversationLog(ORG, cid, 0)
        entry = conversation_entry(inbound(ORG, cid, ms(200)))
        assert entry is not None and lg.add(entry)
        result = fold(
            ORG,
            cid,
            lg.entries.values(),
            timelines={},
            settings=SettingsHistory(),
            final_until=ms(200),
        )
        # c: an Away at 180 may still come, so the dispatcher must not judge it before
        # presence progress reaches 200; d: presence is final up to 200 already
        assigner.observe(lg, result, presence_final=presence_final)
        await assigner.flush()
        (change,) = published[-1].data.changes  # the batch's changes of the org, as one record
        assert change.conversation_id == cid and change.waiting_since == ms(200)
        assert change.presence_until == hold
