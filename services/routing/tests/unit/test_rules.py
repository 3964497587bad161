"""R1-R4, setting off, duplicates, arrival order: the service layer over in-memory adapters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from routing_service.domain.model import AuditKind, Decision, Reason
from routing_testing import (
    InMemoryRouting,
    assigned,
    follow_up,
    inbound,
    outbound,
    resolved,
    signed_in,
    signed_out,
    unassigned,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ORG = "org-1"


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def routing(setting: bool = True) -> InMemoryRouting:
    r = InMemoryRouting()
    await r.start()
    if setting:
        await r.set_setting(ORG, True, T0 - timedelta(days=1))
    return r


async def test_inbound_creates_new_unassigned_and_queue_moves() -> None:
    r = await routing()
    await r.deliver(inbound(ORG, "c1", t(1)))
    assert r.state(ORG, "c1") == ("NEW", None)
    await r.deliver(outbound(ORG, "c1", t(2)))
    assert r.state(ORG, "c1") == ("PENDING", None)
    await r.deliver(follow_up(ORG, "c1", t(3)))
    assert r.state(ORG, "c1") == ("NEW", None)
    await r.deliver(assigned(ORG, "c1", "ana", t(4)))
    await r.deliver(resolved(ORG, "c1", t(5)))
    assert r.state(ORG, "c1") == ("RESOLVED", None)
    await r.deliver(follow_up(ORG, "c1", t(6)))
    assert r.state(ORG, "c1") == ("NEW", None)
    await r.deliver(assigned(ORG, "c1", "ana", t(7)))
    await r.deliver(unassigned(ORG, "c1", t(8)))
    assert r.state(ORG, "c1") == ("NEW", None)
    assert r.decisions.published == []


async def test_r1_sign_out_unassigns_new_keeps_pending() -> None:
    r = await routing()
    await r.deliver(signed_in(ORG, "ana", t(0)))
    for conv in ("new", "pending"):
        await r.deliver(inbound(ORG, conv, t(1)))
        await r.deliver(assigned(ORG, conv, "ana", t(2)))
    await r.deliver(outbound(ORG, "pending", t(3), agent="ana"))
    out = signed_out(ORG, "ana", t(4))
    await r.deliver(out)
    await r.deliver_commands()
    assert r.state(ORG, "new") == ("NEW", None)
    assert r.state(ORG, "pending") == ("PENDING", "ana")
    [d] = r.decisions.published
    assert (d.conversation_id, d.previous_assignee_id, d.reason, d.cause_event_id) == (
        "new",
        "ana",
        Reason.R1_SIGNED_OUT,
        out.id,
    )
    assert d.occurred_at == t(4)
    audit = r.store.views[(ORG, "new")].audit
    assert audit[-1].kind is AuditKind.AUTO_UNASSIGNED and audit[-1].reason is Reason.R1_SIGNED_OUT


async def test_r2_moved_to_new_while_signed_out_then_r4_sign_in_stops_it() -> None:
    r = await routing()
    await r.deliver(signed_in(ORG, "ana", t(0)))
    for conv in ("a", "b"):
        await r.deliver(inbound(ORG, conv, t(1)))
        await r.deliver(assigned(ORG, conv, "ana", t(2)))
        await r.deliver(outbound(ORG, conv, t(3), agent="ana"))
    await r.deliver(signed_out(ORG, "ana", t(4)))
    await r.deliver_commands()
    assert r.decisions.published == []  # both PENDING: R1 leaves them
    msg = inbound(ORG, "a", t(5))
    await r.deliver(msg)  # R2
    assert r.state(ORG, "a") == ("NEW", None)
    [d] = r.decisions.published
    assert d.reason is Reason.R2_MOVED_TO_NEW and d.cause_event_id == msg.id
    await r.deliver(signed_in(ORG, "ana", t(6)))  # R4
    await r.deliver(follow_up(ORG, "b", t(7)))
    assert r.state(ORG, "b") == ("NEW", "ana")
    assert len(r.decisions.published) == 1


async def test_r2_by_follow_up() -> None:
    r = await routing()
    await r.deliver(signed_in(ORG, "ana", t(0)))
    await r.deliver(inbound(ORG, "c", t(1)))
    await r.deliver(assigned(ORG, "c", "ana", t(2)))
    await r.deliver(outbound(ORG, "c", t(3), agent="ana"))
    await r.deliver(signed_out(ORG, "ana", t(4)))
    await r.deliver(follow_up(ORG, "c", t(5)))
    assert r.state(ORG, "c") == ("NEW", None)
    assert [d.reason for d in r.decisions.published] == [Reason.R2_MOVED_TO_NEW]


async def test_r3_assignment_to_signed_out_agent_stands() -> None:
    r = await routing()
    await r.deliver(signed_in(ORG, "ana", t(0)))
    await r.deliver(signed_out(ORG, "ana", t(1)))
    await r.deliver_commands()
    await r.deliver(inbound(ORG, "c", t(2)))
    await r.deliver(assigned(ORG, "c", "ana", t(3)))
    await r.deliver(inbound(ORG, "c", t(4)))  # still signed out, but R3: it stands
    assert r.state(ORG, "c") == ("NEW", "ana")
    assert r.decisions.published == []
    # she learns of it at next sign-in; signing out again sweeps it (R1)
    await r.deliver(signed_in(ORG, "ana", t(5)))
    await r.deliver(signed_out(ORG, "ana", t(6)))
    await r.deliver_commands()
    assert r.state(ORG, "c") == ("NEW", None)
    assert [d.reason for d in r.decisions.published] == [Reason.R1_SIGNED_OUT]


async def test_setting_off_nothing_is_unassigned() -> None:
    r = await routing(setting=False)
    await r.deliver(signed_in(ORG, "ana", t(0)))
    await r.deliver(inbound(ORG, "c", t(1)))
    await r.deliver(assigned(ORG, "c", "ana", t(2)))
    await r.deliver(signed_out(ORG, "ana", t(3)))
    await r.deliver_commands()
    await r.deliver(inbound(ORG, "c", t(4)))
    assert r.state(ORG, "c") == ("NEW", "ana")
    assert r.decisions.published == []


async def test_setting_is_taken_as_of_event_time() -> None:
    r = await routing(setting=False)
    await r.set_setting(ORG, True, t(10))
    await r.deliver(signed_in(ORG, "ana", t(0)))
    await r.deliver(inbound(ORG, "c", t(1)))
    await r.deliver(assigned(ORG, "c", "ana", t(2)))
    await r.deliver(signed_out(ORG, "ana", t(3)))  # setting still off at t3
    await r.deliver_commands()
    assert r.state(ORG, "c") == ("NEW", "ana")
    await r.deliver(inbound(ORG, "c", t(11)))  # R2 once the setting is on
    assert r.state(ORG, "c") == ("NEW", None)


@pytest.mark.parametrize(
    "order", ["presence_first", "message_first", "conversations_topic_lagging"]
)
async def test_outcome_does_not_depend_on_topic_order(order: str) -> None:
    """On event time (the clock stands still, so only the inputs' progress counts): the R1 of
    the sign-out at t4 waits until the conversation streams are past t4, by then the outbound
    at t3 is known and it is PENDING; the R2 at t5 is the only decision."""
    r = InMemoryRouting(instant=False, start_time=T0)
    await r.start()
    await r.set_setting(ORG, True, T0 - timedelta(days=1))
    sin, out = signed_in(ORG, "ana", t(0)), signed_out(ORG, "ana", t(4))
    conv_events = [
        inbound(ORG, "c", t(1)),
        assigned(ORG, "c", "ana", t(2)),
        outbound(ORG, "c", t(3), agent="ana"),
        inbound(ORG, "c", t(5)),  # R2 at t5
    ]
    if order == "presence_first":
        for e in (sin, out, *conv_events):
            await r.deliver(e)
        await r.deliver_commands()
    elif order == "message_first":
        for e in (*conv_events, sin, out):
            await r.deliver(e)
        await r.deliver_commands()
    else:
        # the messages topic is ahead; the assignment (conversations topic) comes last
        for e in (conv_events[0], conv_events[2], conv_events[3], sin, out):
            await r.deliver(e)
        await r.deliver_commands()
        await r.deliver(conv_events[1])
    await r.drain()
    assert r.state(ORG, "c") == ("NEW", None)
    [d] = r.decisions.published
    assert d.reason is Reason.R2_MOVED_TO_NEW and d.cause_event_id == conv_events[3].id


async def test_duplicates_make_no_duplicate_decision() -> None:
    r = await routing()
    events = [
        signed_in(ORG, "ana", t(0)),
        inbound(ORG, "c", t(1)),
        assigned(ORG, "c", "ana", t(2)),
        signed_out(ORG, "ana", t(3)),
    ]
    for e in events + events:
        await r.deliver(e)
    await r.deliver_commands()
    await r.deliver_commands()
    for e in events:
        await r.deliver(e)
    await r.deliver_commands()
    assert r.state(ORG, "c") == ("NEW", None)
    assert len(r.decisions.published) == 1


async def test_crash_before_publish_republishes_same_decision_id_once() -> None:
    r = await routing()
    for e in (
        signed_in(ORG, "ana", t(0)),
        inbound(ORG, "c", t(1)),
        assigned(ORG, "c", "ana", t(2)),
    ):
        await r.deliver(e)
    await r.deliver(signed_out(ORG, "ana", t(3)))
    await r.deliver_commands()
    [d] = r.decisions.published
    # simulate: decision recorded, but the crash hit before it was marked published
    r.store.published.clear()
    await r.crash_and_restart()
    assert [x.decision_id for x in r.decisions.published] == [d.decision_id, d.decision_id]
    await r.crash_and_restart()  # now marked: nothing more
    assert len(r.decisions.published) == 2
    assert r.state(ORG, "c") == ("NEW", None)


async def test_marks_land_after_the_batch_and_before_the_next_batch_publishes() -> None:
    """A batch is done once its decisions are recorded and published (its offsets may be
    committed then); their marks are stored in the background, and the next batch publishes
    nothing before they landed. A crash in between publishes the last batch's decisions
    again with the same ids, and nothing else."""
    r = await routing()
    for e in (signed_in(ORG, "ana", t(0)), inbound(ORG, "c1", t(1)), inbound(ORG, "c2", t(1))):
        await r.deliver(e)
    await r.deliver(assigned(ORG, "c1", "ana", t(2)))
    await r.deliver(assigned(ORG, "c2", "ana", t(2)))
    await r.deliver(outbound(ORG, "c2", t(2.5)))  # PENDING: its R2 comes with an inbound
    await r.deliver(signed_out(ORG, "ana", t(3)))
    await r.deliver_commands()  # R1 of c1
    [first] = r.decisions.published
    marked_when_published: list[bool] = []
    publish = r.decisions.publish_decisions

    async def noting_publish(decisions: Sequence[Decision]) -> None:
        marked_when_published.append(first.decision_id in r.store.published)
        await publish(decisions)

    r.decisions.publish_decisions = noting_publish  # type: ignore[method-assign]
    await r.deliver(inbound(ORG, "c2", t(4)))  # R2 of c2
    assert marked_when_published == [True]
    second = r.decisions.published[-1]
    await r.crash_and_restart()  # before the second batch's marks landed
    ids = [d.decision_id for d in r.decisions.published]
    assert ids == [first.decision_id, second.decision_id, second.decision_id]
    assert r.unmarked_at_crashes == [second.decision_id]
    await r.crash_and_restart(marks_landed=True)
    assert len(r.decisions.published) == 3
    assert (r.state(ORG, "c1"), r.state(ORG, "c2")) == (("NEW", None), ("NEW", None))


async def test_late_sign_in_cannot_undo_a_published_unassignment() -> None:
    """Documented difference: decisions once published stand."""
    r = await routing()
    await r.deliver(signed_in(ORG, "ana", t(0)))
    await r.deliver(inbound(ORG, "c", t(1)))
    await r.deliver(assigned(ORG, "c", "ana", t(2)))
    await r.deliver(outbound(ORG, "c", t(3), agent="ana"))
    await r.deliver(signed_out(ORG, "ana", t(4)))
    await r.deliver(inbound(ORG, "c", t(6)))  # R2: she looks signed out
    await r.deliver(signed_in(ORG, "ana", t(5)))  # arrives late: she was back at t5
    await r.deliver(inbound(ORG, "c", t(7)))
    assert r.state(ORG, "c") == ("NEW", None)
    assert len(r.decisions.published) == 1


class FlakyPublisher:
    """Fails the first ``failures`` publishes (a broker outage), then records."""

    def __init__(self, inner: object, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def publish_decisions(self, decisions: object) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        await self.inner.publish_decisions(decisions)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "failing", ["append_journal", "record_decisions", "publish", "mark_published"]
)
async def test_transient_failure_then_retry_of_the_same_batch_loses_nothing(failing: str) -> None:
    """The consumer retries a batch in the same process after a transient failure: the
    retry must persist the journal entry and record + publish the decision, although the
    owner's memory already saw the event and derived the decision; a decision published
    before the failure (the journal insert runs alongside, the mark after) is not published
    again."""
    r = await routing()
    for e in (signed_in(ORG, "ana", t(0)), inbound(ORG, "c", t(1))):
        await r.deliver(e)
    await r.deliver(assigned(ORG, "c", "ana", t(2)))
    await r.deliver(outbound(ORG, "c", t(2.5)))  # PENDING: the sign-out is no R1
    await r.deliver(signed_out(ORG, "ana", t(3)))
    trigger = inbound(ORG, "c", t(4))  # back to NEW, assignee signed out: R2
    real_publisher = r.decisions
    if failing == "publish":
        r.owner._publisher = FlakyPublisher(real_publisher, 1)  # type: ignore[assignment]
    else:
        original = getattr(r.store, failing)
        calls = {"n": 0}

        async def flaky(*args: object, **kwargs: object) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("database down")
            await original(*args, **kwargs)

        setattr(r.store, failing, flaky)
    if failing == "mark_published":
        # marks are stored in the background: the batch is done without them, a failed
        # one is tried again by the next batch (or the owner's timer)
        await r.deliver(trigger)
        assert not r.store.published
    else:
        with pytest.raises(ConnectionError):
            await r.deliver(trigger)
    await r.deliver(trigger)  # the consumer's retry of the same batch
    await r.owner.settle_marks(timeout=10)  # what a revoke or a stop does
    assert len(real_publisher.published) == 1
    [d] = real_publisher.published
    assert d.cause_event_id == trigger.id
    assert d.decision_id in r.store.decisions and d.decision_id in r.store.published
    assert any(k[2] == trigger.id for k in r.store.journal)
    await r.crash_and_restart()  # a take-over finds everything stored: no repeat
    assert len(real_publisher.published) == 1
    assert r.state(ORG, "c") == ("NEW", None)
