"""Snapshots, compaction, take-over from snapshots and decision retention on FerretDB.

The owner (the real service layer) over ``MongoRoutingStore`` on the devstack's database;
no Kafka needed: deliveries are handed to ``ConversationOwner.handle`` as the consumer would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from inbox.routing.v1 import routing_pb2 as pb
from inbox_contracts import CloudEvent, EventData
from inbox_contracts.topics import CONVERSATIONS, MESSAGES
from inbox_kit.auth import Principal, Role, reset_current_principal, set_current_principal
from pymongo import AsyncMongoClient
from routing_service.adapters.memory import InMemoryStore, InMemoryViews, RecordingDecisionPublisher
from routing_service.adapters.mongo import MongoRoutingStore
from routing_service.domain.audit import AuditRetention
from routing_service.domain.model import Decision, PresenceEntry, Queue, Reason, SettingChange
from routing_service.entrypoints.grpc_api import AUDIT_PAGES, RoutingServicer
from routing_service.service_layer.owner import (
    BehindHorizon,
    Compacting,
    ConversationOwner,
    Delivery,
    EventTime,
)
from routing_service.service_layer.ports import Compaction, DecisionRow, JournalRow
from routing_service.service_layer.translate import conversation_entry
from routing_testing import SimClock, assigned, complete_now, follow_up, inbound, outbound, resolved

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
L = timedelta(minutes=1)


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def delivery(event: CloudEvent[EventData]) -> Delivery:
    topic = MESSAGES.name if "message" in event.type else CONVERSATIONS.name
    return Delivery(topic, 0, event)


class Owner:
    def __init__(self, store: MongoRoutingStore, clock: SimClock) -> None:
        self.views = InMemoryStore()
        self.owner = ConversationOwner(
            store,
            RecordingDecisionPublisher(),
            InMemoryViews(self.views),
            EventTime(L, complete_as_of=complete_now(clock)),
            compacting=Compacting(lag=timedelta(0), max_conversations=0),
        )
        self.owner.presence.observe(1, {0: t(1000)})

    def state(self, org: str, conv: str) -> tuple[str | None, str | None]:
        v = self.views.views[(org, conv)]
        return (v.state.queue.value if v.state.queue else None, v.state.assignee_id)


async def test_compaction_take_over_from_snapshots_and_the_horizon_on_ferretdb(
    stack: Any, unique: Any
) -> None:
    org = unique("org")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.infra.mongodb_uri)
    try:
        db = client[stack.database]
        store = MongoRoutingStore(db)
        await store.ensure_indexes()
        await store.append_setting(org, SettingChange(T0 - timedelta(days=1), True, "admin"))
        await store.record_presence(org, "ana", PresenceEntry("in-1", "signed_in", t(0), True))
        clock = SimClock(t(4))
        first = Owner(store, clock)
        await first.owner.assign([0])
        await first.owner.handle(
            [
                delivery(e)
                for e in (
                    inbound(org, "old", t(1)),
                    inbound(org, "held", t(1)),
                    outbound(org, "old", t(2)),
                    assigned(org, "held", "ana", t(2)),
                    resolved(org, "old", t(3)),
                )
            ]
        )
        assert await db["journal"].count_documents({}) == 5
        clock.now = t(10)  # horizon t(8)
        assert await first.owner.compact() == 2
        assert await db["journal"].count_documents({}) == 0
        assert await db["snapshots"].count_documents({}) == 2
        assert [d["conversation_id"] async for d in db["resident"].find({})] == ["held"]

        second = Owner(store, clock)
        await second.owner.assign([0])
        assert set(second.owner.logs) == {(org, "held")}  # the settled one stays in the store
        assert second.state(org, "held") == ("NEW", "ana")
        late = inbound(org, "old", t(5))
        outcome = await second.owner.handle([delivery(late)])
        assert [type(e) for _, e in outcome.refused] == [BehindHorizon]
        await second.owner.handle([delivery(follow_up(org, "old", t(9)))])
        assert second.state(org, "old") == ("NEW", None)  # loaded from its snapshot
        audit = second.views.views[(org, "old")].audit
        assert [a.to_queue for a in audit] == ["NEW", "PENDING", "RESOLVED", "NEW"]
    finally:
        await client.close()


async def test_decisions_folded_into_snapshots_expire_and_are_pruned(stack: Any) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.infra.mongodb_uri)
    try:
        db = client[stack.database]
        store = MongoRoutingStore(db, decision_retention=timedelta(hours=1))
        await store.ensure_indexes()
        now = datetime.now(UTC)
        rows = [
            DecisionRow(
                0,
                Decision(
                    f"d-{i}",
                    "org",
                    f"c{i}",
                    "ana",
                    f"as-{i}",
                    Reason.R1_SIGNED_OUT,
                    f"out-{i}",
                    "signed_out",
                    now - timedelta(hours=2 if i < 70 else 0),
                ),
                published=True,
            )
            for i in range(80)
        ]
        await store.record_decisions(rows)
        await store.mark_published(rows)
        await store.compact(Compaction(decisions=rows))
        assert {r.compacted for r in await store.load_decisions([0])} == {True}
        pruned = 0
        while (n := await store.prune(now, limit=32)) > 0:  # bounded runs
            assert n <= 32
            pruned += n
        assert pruned == 70
        assert await db["decisions"].count_documents({}) == 10
        assert await db["published"].count_documents({}) == 10
    finally:
        await client.close()


async def test_audit_paging_stays_correct_across_archiving_and_a_prune_on_ferretdb(
    stack: Any, unique: Any
) -> None:
    org, conv = unique("org"), "long"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.infra.mongodb_uri)
    principal = set_current_principal(Principal(org, "admin", Role.ADMIN))
    try:
        db = client[stack.database]
        store = MongoRoutingStore(db)
        await store.ensure_indexes()
        clock = SimClock(t(10))
        views = InMemoryStore()
        owner = ConversationOwner(
            store,
            RecordingDecisionPublisher(),
            InMemoryViews(views),
            EventTime(L, complete_as_of=complete_now(clock)),
            compacting=Compacting(
                lag=timedelta(0),
                max_conversations=0,
                audit=AuditRetention(keep=2, retention=timedelta(hours=1)),
            ),
        )
        owner.presence.observe(1, {0: t(1000)})
        wall = [t(10)]
        api = RoutingServicer(store, None, None, clock=lambda: wall[0])  # type: ignore[arg-type]

        async def moves(*minutes: float) -> None:
            # NEW -> PENDING -> NEW ...: every event moves the queue (one audit entry each)
            pending = views.views[(org, conv)].state.queue is Queue.PENDING
            kinds = (follow_up, outbound) if pending else (outbound, follow_up)
            events = [kinds[i % 2](org, conv, t(m)) for i, m in enumerate(minutes)]
            await owner.handle([delivery(e) for e in events])

        async def compact_and_store_view() -> None:
            assert await owner.compact() == 1
            await store.write_views([views.views[(org, conv)]], new_keys=set())

        async def page(token: str) -> tuple[list[datetime], str]:
            got = await api.GetAuditTrail(
                pb.GetAuditTrailRequest(conversation_id=conv, page_size=3, page_token=token), None
            )
            return [e.occurred_at.ToDatetime(UTC) for e in got.entries], got.next_page_token

        await owner.assign([0])
        await owner.handle([delivery(inbound(org, conv, t(1)))])
        await moves(2, 3, 4, 5, 6)  # created + 5 queue moves
        await compact_and_store_view()  # horizon t(8): entries 0-3 archived, the view keeps 2
        segments = db["audit_archive"]
        assert await segments.count_documents({"org_id": org}) == 1
        first, token = await page("")
        assert first == [t(1), t(2), t(3)]

        await moves(11, 12, 13, 14)
        clock.now = t(20)
        await compact_and_store_view()  # entries 4-7 (t5, t6, t11, t12) archived too
        assert await segments.count_documents({"org_id": org}) == 2
        second, token = await page(token)
        assert second == [t(4), t(5), t(6)]  # the token outlived the move
        assert token == AUDIT_PAGES.encode([6])

        # the first segment (last entry t4) expires at t(64): pruned, the second stays
        wall[0] = t(66)
        while await store.prune_audit(wall[0], limit=1) > 0:  # bounded runs
            pass
        assert await segments.count_documents({"org_id": org}) == 1
        assert (await page(AUDIT_PAGES.encode([1]))) == await page("")  # into the pruned one:
        rest, after = await page("")  # continues at the oldest entry retained
        assert rest == [t(5), t(6), t(11)]
        assert (await page(token))[0] == [t(11), t(12), t(13)]  # the older token: no gap
        last, end = await page(after)
        assert (last, end) == ([t(12), t(13), t(14)], "")
    finally:
        reset_current_principal(principal)
        await client.close()


async def test_presence_timelines_keep_their_retention_and_the_state_at_the_cut(stack: Any) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.infra.mongodb_uri)
    try:
        store = MongoRoutingStore(client[stack.database], timeline_retention=timedelta(hours=24))
        day = timedelta(days=1)
        entries = [
            PresenceEntry(f"p{n}", "t", T0 + n * day / 2, signed_in=n % 2 == 0) for n in range(6)
        ]
        for entry in entries:
            await store.record_presence("org", "ana", entry)
        await store.record_presence("org", "ana", entries[-1])  # a redelivery: a no-op
        timeline = (await store.timelines([("org", "ana")]))[("org", "ana")]
        # newest at T0 + 2.5 days, cut at T0 + 1.5 days (p3, kept): p2 is the state before it
        assert [p.event_id for p in timeline] == ["p2", "p3", "p4", "p5"]
        assert [p.signed_in for p in timeline] == [True, False, True, False]
    finally:
        await client.close()


async def test_setting_histories_keep_their_retention_and_the_value_at_the_cut(
    stack: Any, unique: Any
) -> None:
    org = unique("org")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.infra.mongodb_uri)
    try:
        store = MongoRoutingStore(client[stack.database], settings_retention=timedelta(hours=24))
        day = timedelta(days=1)
        for n in range(6):
            await store.append_setting(org, SettingChange(T0 + n * day / 2, n % 2 == 0, "admin"))
        history = (await store.settings([org]))[org]
        # newest at T0 + 2.5 days, cut at T0 + 1.5 days (kept): T0 + 1 day is the value before it
        assert [c.effective_from for c in history.changes] == [
            T0 + n * day / 2 for n in (2, 3, 4, 5)
        ]
        assert [c.remove_assignment_on_sign_out for c in history.changes] == [
            True,
            False,
            True,
            False,
        ]
    finally:
        await client.close()


async def test_journal_and_decisions_read_back_packed_and_in_the_older_shape_on_ferretdb(
    stack: Any, unique: Any
) -> None:
    """Journal entries and decisions are stored packed (keys as fields, the rest one JSON
    string: a take-over scans them); documents of the older shape (a field per value) are
    still read, and both read back as they were written."""
    org = unique("org")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.infra.mongodb_uri)
    try:
        db = client[stack.database]
        store = MongoRoutingStore(db)
        entry = conversation_entry(outbound(org, "c-new", t(1)))
        older = conversation_entry(outbound(org, "c-old", t(2)))
        assert entry is not None and older is not None
        await store.append_journal([JournalRow(org, "c-new", 4, entry, MESSAGES.name)])
        await db["journal"].insert_one(
            {
                "_id": f"{org}|c-old|{older.event_id}",
                "org_id": org,
                "conversation_id": "c-old",
                "partition": 4,
                "event_id": older.event_id,
                "event_type": older.event_type,
                "kind": older.kind.value,
                "at": older.occurred_at.isoformat(),
                "actor": older.actor,
                "assignee_id": older.assignee_id,
                "topic": MESSAGES.name,
                "channel_id": older.channel_id,
            }
        )
        stored = await store.load_journal([4])
        assert {(r.conversation_id, r.entry, r.topic) for r in stored if r.org_id == org} == {
            ("c-new", entry, MESSAGES.name),
            ("c-old", older, MESSAGES.name),
        }
        packed = await db["journal"].find_one({"_id": f"{org}|c-new|{entry.event_id}"})
        assert packed is not None and set(packed) == {"_id", "partition", "packed"}

        def decision(conv: str) -> Decision:
            return Decision(
                f"{org}-{conv}", org, conv, "ana", f"as-{conv}", Reason.R1_SIGNED_OUT,
                f"out-{conv}", "signed_out", t(3),
            )  # fmt: skip

        new, old = decision("c-new"), decision("c-old")
        await store.record_decisions([DecisionRow(4, new)])
        await db["decisions"].insert_one(
            {
                "_id": old.decision_id,
                "partition": 4,
                "org_id": org,
                "conversation_id": "c-old",
                "previous_assignee_id": "ana",
                "assignment_id": old.assignment_id,
                "reason": old.reason.value,
                "cause_event_id": old.cause_event_id,
                "cause_event_type": old.cause_event_type,
                "occurred_at": old.occurred_at.isoformat(),
                "cause_rank": old.cause_rank,
            }
        )
        got = {r.decision for r in await store.load_decisions([4]) if r.decision.org_id == org}
        assert got == {new, old}
    finally:
        await client.close()
