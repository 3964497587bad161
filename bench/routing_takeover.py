"""Take-over time and owner memory with a large history (part of ``make bench NAME=routing``).

For each size N (10k, 100k, 1M historical conversations, ``ROUTING_BENCH_TAKEOVER_SIZES``) a
fresh database is seeded straight through the store's bulk paths (``insert_snapshots``,
``append_journal``, the resident set): N settled conversations (RESOLVED, a snapshot with a
five-entry audit trail) of which 10,000 are *live*: a snapshot plus two journal entries after
its horizon, 2,000 of them NEW and assigned (resident); a live one's snapshot also has its
take-over copy (``live_snapshots``), as the owner keeps it. Then a fresh process takes all six
partitions over through the real code path (``ConversationOwner.assign`` on
``MongoRoutingStore``) and reports the take-over time and its resident set size (VmRSS after
the take-over, VmHWM peak). Baseline: the 10k run of the same bench run; ratio = N / 10k.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from routing_service.adapters.mongo import MongoRoutingStore
from routing_service.domain.key_filter import KeyFilter
from routing_service.domain.model import (
    AuditEntry,
    AuditKind,
    ConversationEntry,
    ConversationState,
    Decision,
    EntryKind,
    Queue,
    Reason,
    Snapshot,
)
from routing_service.service_layer.owner import Compacting, ConversationOwner, EventTime
from routing_service.service_layer.ports import DecisionRow, JournalRow, SnapshotRow

from bench.common import Metric

MONGO = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
SIZES = [
    int(x)
    for x in os.environ.get("ROUTING_BENCH_TAKEOVER_SIZES", "10000,100000,1000000").split(",")
]
LIVE, RESIDENT, PARTITIONS = 10_000, 2_000, 6
ORG = "org-takeover"
SEED_CHUNK = 2_000


def _audit(at: datetime, agent: str | None) -> tuple[AuditEntry, ...]:
    eid = uuid.uuid4().hex
    entries = [
        AuditEntry(AuditKind.CREATED, at, "contact", eid, "bench.inbound", to_queue=Queue.NEW),
        AuditEntry(AuditKind.ASSIGNED, at, "boss", eid + "a", "bench.assigned", assignee_id="a1"),
        AuditEntry(
            AuditKind.QUEUE_MOVED,
            at,
            "a1",
            eid + "o",
            "bench.outbound",
            from_queue=Queue.NEW,
            to_queue=Queue.PENDING,
        ),
    ]
    if agent is None:
        entries.append(
            AuditEntry(
                AuditKind.QUEUE_MOVED,
                at,
                "a1",
                eid + "r",
                "bench.resolved",
                from_queue=Queue.PENDING,
                to_queue=Queue.RESOLVED,
            )
        )
        entries.append(
            AuditEntry(
                AuditKind.UNASSIGNED,
                at,
                "a1",
                eid + "r",
                "bench.resolved",
                previous_assignee_id="a1",
            )
        )
    return tuple(entries)


def _snapshot(cid: str, i: int, horizon: datetime, live: bool) -> SnapshotRow:
    at = horizon - timedelta(minutes=5)
    resident = live and i < RESIDENT
    agent = f"agent-{i % 50}" if live else None
    state = ConversationState(
        ORG,
        cid,
        Queue.NEW if resident else (Queue.PENDING if live else Queue.RESOLVED),
        assignee_id=agent,
        assignment_id=f"as-{cid}" if agent else None,
        assigned_at=at if agent else None,
        assigned_by="boss" if agent else None,
        assignee_signed_in_at_assignment=True if agent else None,
        updated_at=at,
    )
    snap = Snapshot(state, _audit(at, agent), horizon, folded=5, channel_id="ch-1", latest_at=at)
    return SnapshotRow(ORG, cid, i % PARTITIONS, snap)


async def seed(database: str, total: int) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    try:
        await client.drop_database(database)
        store = MongoRoutingStore(client[database])
        await store.ensure_indexes()
        horizon = datetime.now(UTC) - timedelta(minutes=20)
        started = time.perf_counter()
        filters = {p: KeyFilter() for p in range(PARTITIONS)}
        for start in range(0, total, SEED_CHUNK):
            rows = [
                _snapshot(f"c{i:07d}", i, horizon, i < LIVE)
                for i in range(start, min(total, start + SEED_CHUNK))
            ]
            for r in rows:
                filters[r.partition].add(f"{r.org_id}|{r.conversation_id}")
            await store.insert_snapshots(rows)
            # what the owner keeps for a take-over: a copy of each live one's snapshot
            # (written by the compaction that left events after its horizon, or after it was
            # loaded on demand when an event came)
            await store.write_live_snapshots([r for r in rows if int(r.conversation_id[1:]) < LIVE])
        for p, f in filters.items():
            await store.write_snapshot_filter(p, f.to_bytes())
        journal = [
            JournalRow(
                ORG,
                f"c{i:07d}",
                i % PARTITIONS,
                ConversationEntry(
                    uuid.uuid4().hex,
                    "bench.inbound",
                    EntryKind.INBOUND,
                    horizon + timedelta(seconds=j + 1),
                    "contact",
                    channel_id="ch-1",
                ),
            )
            for i in range(LIVE)
            for j in range(2)
        ]
        for start in range(0, len(journal), SEED_CHUNK):
            await store.append_journal(journal[start : start + SEED_CHUNK])
        resident = client[database]["resident"]
        docs = [
            {
                "_id": f"{ORG}|c{i:07d}",
                "org_id": ORG,
                "conversation_id": f"c{i:07d}",
                "partition": i % PARTITIONS,
            }
            for i in range(RESIDENT)
        ]
        await resident.insert_many(docs)
        return time.perf_counter() - started
    finally:
        await client.close()


class _NoPublisher:
    async def publish_decisions(self, decisions: Any) -> None:
        return None


class _CollectingViews:
    def __init__(self) -> None:
        self.count = 0

    def submit(self, views: Any, new_keys: Any) -> None:
        self.count += len(list(views))

    async def drop(self, partitions: set[int]) -> None:
        return None

    def pending(self, key: Any) -> bool:
        return False


def _status(field: str) -> float:
    """A /proc/self/status field in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def take_over(database: str) -> dict[str, float]:
    """The measured process: take every partition over, report time and memory."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    try:
        store = MongoRoutingStore(client[database])
        owner = ConversationOwner(store, _NoPublisher(), _CollectingViews())
        before = _status("VmRSS")
        started = time.perf_counter()
        await owner.assign(range(PARTITIONS))
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "conversations_in_memory": len(owner.logs),
            "rss_mb": _status("VmRSS"),
            "rss_before_mb": before,
            "peak_rss_mb": _status("VmHWM"),
            **{f"phase_{k}": v for k, v in owner.last_takeover.items()},
        }
    finally:
        await client.close()


def measure(database: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.routing_takeover", database],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def drop(database: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


async def run() -> list[Metric]:
    metrics: list[Metric] = []
    baseline: float | None = None
    for total in SIZES:
        database = f"bench_routing_takeover_{total}"
        seeded = await seed(database, total)
        print(f"take-over {total}: seeded in {seeded:.0f}s", flush=True)
        runs = [measure(database) for _ in range(3 if total <= 100_000 else 1)]
        got = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        await drop(database)
        print(f"take-over {total}: {json.dumps(got)}", flush=True)
        if baseline is None:
            baseline = got["seconds"]
        ratio = got["seconds"] / baseline
        big = total >= 1_000_000
        metrics.append(
            Metric(
                f"takeover_{total}_historical_{LIVE}_live",
                round(got["seconds"], 2),
                "s",
                baseline_value=round(baseline, 2),
                ratio=round(ratio, 2),
                target="<= 5 s and <= 1.5 x take-over(10k)" if big else None,
                met=(got["seconds"] <= 5 and ratio <= 1.5) if big else None,
            )
        )
        metrics.append(
            Metric(
                f"owner_rss_after_takeover_{total}_historical",
                round(got["rss_mb"], 1),
                "MB",
                target="<= 300 MB" if big else None,
                met=got["rss_mb"] <= 300 if big else None,
            )
        )
    return metrics + await retention_run()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(take_over(sys.argv[1]))))


class _Now:
    """Inputs complete as of now, presence too: compaction's horizon is now - L - lag."""

    async def __call__(self, topic: str, partition: int) -> datetime | None:
        return datetime.now(UTC)


async def retention_run(conversations: int = 5_000) -> list[Metric]:
    """Seed 2-hour-old history (4 journal entries and a published decision per conversation),
    then one retention run: compaction until nothing is left behind the horizon, then the
    pruning task (decision retention 1 h) until it finds nothing. Counts documents before and
    after (the store keeps one snapshot per conversation)."""
    database = "bench_routing_retention"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    try:
        await client.drop_database(database)
        db = client[database]
        store = MongoRoutingStore(db, decision_retention=timedelta(hours=1))
        await store.ensure_indexes()
        base = datetime.now(UTC) - timedelta(hours=2)
        kinds = (EntryKind.INBOUND, EntryKind.ASSIGNED, EntryKind.OUTBOUND, EntryKind.RESOLVED)
        journal = [
            JournalRow(
                ORG,
                f"r{i:06d}",
                i % PARTITIONS,
                ConversationEntry(
                    f"r{i:06d}-{j}",
                    f"bench.{kind.value}",
                    kind,
                    base + timedelta(seconds=j),
                    "a1",
                    "a1" if kind is EntryKind.ASSIGNED else None,
                ),
            )
            for i in range(conversations)
            for j, kind in enumerate(kinds)
        ]
        for start in range(0, len(journal), SEED_CHUNK):
            await store.append_journal(journal[start : start + SEED_CHUNK])
        decisions = [
            DecisionRow(
                i % PARTITIONS,
                Decision(
                    f"d{i:06d}",
                    ORG,
                    f"r{i:06d}",
                    "a1",
                    f"r{i:06d}-1",
                    Reason.R1_SIGNED_OUT,
                    f"out-{i}",
                    "bench.signed_out",
                    base + timedelta(seconds=1.5),
                    0,
                ),
            )
            for i in range(conversations)
        ]
        for start in range(0, len(decisions), SEED_CHUNK):
            await store.record_decisions(decisions[start : start + SEED_CHUNK])
            await store.mark_published(decisions[start : start + SEED_CHUNK])
        names = ("journal", "decisions", "published", "snapshots", "resident")
        before = {n: await db[n].count_documents({}) for n in names}
        owner = ConversationOwner(
            store,
            _NoPublisher(),
            _CollectingViews(),
            EventTime(timedelta(milliseconds=500), complete_as_of=_Now()),
            compacting=Compacting(lag=timedelta(minutes=15), max_conversations=0),
        )
        owner.presence.observe(1, {0: datetime.now(UTC)})
        await owner.assign(range(PARTITIONS))
        started = time.perf_counter()
        while await owner.compact():
            pass
        pruned = 0
        while (n := await store.prune(datetime.now(UTC))) > 0:
            pruned += n
        took = time.perf_counter() - started
        after = {n: await db[n].count_documents({}) for n in names}
        print(f"retention: before {before}, after {after} ({took:.1f}s)", flush=True)
        total_before, total_after = sum(before.values()), sum(after.values())
        return [
            Metric(
                f"store_documents_after_retention_run_{conversations}_conversations",
                total_after,
                "documents",
                baseline_value=total_before,
                ratio=round(total_after / total_before, 3),
                target="journal, decisions, published marks empty; one snapshot per conversation",
                met=after["journal"] == after["decisions"] == after["published"] == 0
                and after["snapshots"] == conversations,
            ),
            Metric("retention_run_seconds", round(took, 1), "s"),
        ]
    finally:
        await client.drop_database(database)
        await client.close()
