"""Snapshots, compaction, take-over from snapshots and decision retention on FerretDB.

The owner (the real service layer) over ``MongoRoutingStore`` on the devstack's database;
no Kafka needed: deliveries are handed to ``ConversationOwner.handle`` as the consumer would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from inbox_contracts import CloudEvent, EventData
from inbox_contracts.topics import CONVERSATIONS, MESSAGES
from pymongo import AsyncMongoClient
from routing_service.adapters.memory import InMemoryStore, InMemoryViews, RecordingDecisionPublisher
from routing_service.adapters.mongo import MongoRoutingStore
from routing_service.domain.model import Decision, PresenceEntry, Reason, SettingChange
from routing_service.service_layer.owner import (
    BehindHorizon,
    Compacting,
    ConversationOwner,
    Delivery,
    EventTime,
)
from routing_service.service_layer.ports import Compaction, DecisionRow
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
