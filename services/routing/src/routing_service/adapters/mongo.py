"""MongoDB (PyMongo async) implementation of the routing store.

Shaped by FerretDB v1 (our test database, SQLite backend): exact ``{_id: <string>}`` filters on
find/update/replace/delete use the unique index (devstack build with the ``_id`` index patch,
~0.3-1 ms at 100k documents), and so does ``{_id: {$in: [...]}}`` (the ``$in`` patch); every
other filter (secondary fields) scans the collection, and updates are not atomic. So the hot
path is insert-only for the facts (journal, decisions, published marks, sweep marks: unique
``_id``s make every write idempotent), reads presence timelines and settings by ``_id``
(``$in`` per batch), and writes the read
model by exact-``_id`` replaces (one document per conversation, written only by its owner).
Only the take-over (``load_*``) and gRPC listing query by other fields: on real MongoDB they use
the secondary indexes created in ``ensure_indexes``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from inbox_kit.mongo import (
    bulk_write,
    find_by_ids,
    insert_many,
    queries_use_secondary_indexes,
    upsert,
)
from pydantic_core import to_json
from pymongo import ASCENDING, DeleteOne, ReplaceOne, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from routing_service.domain.audit import (
    NO_ARCHIVE,
    AuditArchive,
    AuditSegment,
    WaitingReplay,
)
from routing_service.domain.model import (
    AuditEntry,
    AuditKind,
    ConversationEntry,
    ConversationState,
    Decision,
    EntryKind,
    PresenceEntry,
    Queue,
    Reason,
    SettingChange,
    SettingsHistory,
    Snapshot,
)
from routing_service.domain.timeline import expired_changes, expired_entries
from routing_service.service_layer.ports import (
    AgentKey,
    Compaction,
    ConversationKey,
    ConversationView,
    DecisionRow,
    JournalRow,
    Page,
    SnapshotRow,
)

Doc = dict[str, Any]
log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000


def _ts(dt: datetime) -> str:
    """Exact, sortable time (FerretDB keeps only milliseconds of BSON dates)."""
    return dt.isoformat()


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _opt_ts(dt: datetime | None) -> str | None:
    return _ts(dt) if dt is not None else None


def _opt_dt(s: str | None) -> datetime | None:
    return _dt(s) if s else None


def conversation_doc_id(org_id: str, conversation_id: str) -> str:
    return f"{org_id}|{conversation_id}"


async def insert_ignoring_duplicates(collection: Any, docs: Sequence[Doc]) -> int:
    """Insert all; documents whose ``_id`` exists are skipped. Returns how many were new."""
    if not docs:
        return 0
    try:
        return await insert_many(collection, docs)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return int(exc.details.get("nInserted", 0))


class MongoRoutingStore:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        decision_retention: timedelta = timedelta(hours=24),
        timeline_retention: timedelta = timedelta(hours=24),
        settings_retention: timedelta = timedelta(hours=24),
    ) -> None:
        self._db = db
        self._retention = decision_retention
        self._timeline_retention = timeline_retention
        self._settings_retention = settings_retention
        self._journal = db["journal"]
        self._decisions = db["decisions"]
        self._published = db["published"]
        self._views = db["conversations"]
        self._presence = db["presence"]
        self._settings = db["settings"]
        self._snapshots = db["snapshots"]
        self._resident = db["resident"]
        self._filters = db["snapshot_filters"]
        #: Archived audit entries, one document per segment (``domain.audit``).
        self._audit = db["audit_archive"]
        #: Copies of the snapshots a take-over loads, read by partition (``load_live_snapshots``).
        self._live = db["live_snapshots"]
        #: Per partition, the latest owner take-over (``claim_partitions``).
        self._claims = db["partition_claims"]

    async def ensure_indexes(self) -> None:
        """TTL indexes where the database has them; the indexes of the take-over's and the
        listings' queries on MongoDB only: FerretDB never uses a secondary index for a query
        and would maintain them on every journal, decision and view write."""
        for coll in (self._decisions, self._published, self._audit):
            try:
                await coll.create_index([("expire_at", ASCENDING)], expireAfterSeconds=0)
            except OperationFailure:
                # FerretDB v1 has no TTL indexes: ``prune`` does the same, bounded
                log.info("no TTL index on %s; pruning task only", coll.name)
        if not await queries_use_secondary_indexes(self._db):
            return
        for coll in (
            self._journal,
            self._decisions,
            self._published,
            self._views,
            self._resident,
            self._live,
        ):
            await coll.create_index([("partition", ASCENDING)])
        await self._views.create_index(
            [
                ("org_id", ASCENDING),
                ("queue", ASCENDING),
                ("assignee_id", ASCENDING),
                ("conversation_id", ASCENDING),
            ]
        )
        await self._views.create_index(
            [("org_id", ASCENDING), ("assignee_id", ASCENDING), ("conversation_id", ASCENDING)]
        )

    # -- journal ----------------------------------------------------------------------------

    async def load_journal(self, partitions: Sequence[int]) -> list[JournalRow]:
        rows = []
        async for d in self._journal.find({"partition": {"$in": list(partitions)}}):
            d = _unpacked(d)
            entry = ConversationEntry(
                d["event_id"],
                d["event_type"],
                EntryKind(d["kind"]),
                _dt(d["at"]),
                d["actor"],
                d.get("assignee_id"),
                channel_id=d.get("channel_id"),
                reason=d.get("reason"),
                cause_event_id=d.get("cause_event_id"),
                cause_event_type=d.get("cause_event_type"),
            )
            rows.append(
                JournalRow(
                    d["org_id"], d["conversation_id"], d["partition"], entry, d.get("topic", "")
                )
            )
        return rows

    async def append_journal(self, rows: Sequence[JournalRow]) -> None:
        await insert_ignoring_duplicates(self._journal, [_journal_doc(r) for r in rows])

    # -- decisions ----------------------------------------------------------------------------

    async def load_decisions(self, partitions: Sequence[int]) -> list[DecisionRow]:
        query = {"partition": {"$in": list(partitions)}}
        marks = {d["_id"]: bool(d.get("compacted")) async for d in self._published.find(query)}
        rows = []
        async for d in self._decisions.find(query):
            d = _unpacked(d)
            decision = Decision(
                d["_id"],
                d["org_id"],
                d["conversation_id"],
                d["previous_assignee_id"],
                d["assignment_id"],
                Reason(d["reason"]),
                d["cause_event_id"],
                d["cause_event_type"],
                _dt(d["occurred_at"]),
                d["cause_rank"],
            )
            rows.append(
                DecisionRow(d["partition"], decision, d["_id"] in marks, marks.get(d["_id"], False))
            )
        return rows

    async def record_decisions(self, rows: Sequence[DecisionRow]) -> None:
        await insert_ignoring_duplicates(self._decisions, [_decision_doc(r) for r in rows])

    async def mark_published(self, rows: Sequence[DecisionRow]) -> None:
        docs = [{"_id": r.decision.decision_id, "partition": r.partition} for r in rows]
        await insert_ignoring_duplicates(self._published, docs)

    # -- read model -----------------------------------------------------------------------------

    # -- snapshots ------------------------------------------------------------------------------

    async def load_resident(self, partitions: Sequence[int]) -> list[tuple[ConversationKey, int]]:
        return [
            ((d["org_id"], d["conversation_id"]), d["partition"])
            async for d in self._resident.find({"partition": {"$in": list(partitions)}})
        ]

    async def load_snapshots(
        self, keys: Iterable[ConversationKey]
    ) -> dict[ConversationKey, SnapshotRow]:
        ids = [conversation_doc_id(o, c) for o, c in keys]
        rows = [_snapshot_from(d) for d in await find_by_ids(self._snapshots, ids)]
        return {r.key: r for r in rows}

    async def claim_partitions(self, partitions: Sequence[int], claim: str) -> None:
        await bulk_write(
            self._claims,
            [ReplaceOne({"_id": str(p)}, {"claim": claim}, upsert=True) for p in partitions],
        )

    async def partition_claims(self, partitions: Sequence[int]) -> dict[int, str]:
        docs = await find_by_ids(self._claims, [str(p) for p in partitions])
        return {int(d["_id"]): str(d["claim"]) for d in docs}

    async def load_live_snapshots(self, partitions: Sequence[int]) -> list[SnapshotRow]:
        query = {"partition": {"$in": list(partitions)}}
        return [_snapshot_from(d) async for d in self._live.find(query)]

    async def write_live_snapshots(self, rows: Sequence[SnapshotRow]) -> None:
        """Replace (upsert) the take-over copies by exact ``_id``."""
        await bulk_write(
            self._live,
            [
                ReplaceOne({"_id": conversation_doc_id(*r.key)}, _snapshot_doc(r), upsert=True)
                for r in rows
            ],
        )

    async def load_snapshot_filters(self, partitions: Sequence[int]) -> dict[int, bytes]:
        docs = await find_by_ids(self._filters, [str(p) for p in partitions])
        return {int(d["_id"]): bytes(d["bits"]) for d in docs}

    async def write_snapshot_filter(self, partition: int, data: bytes) -> None:
        await self._filters.replace_one({"_id": str(partition)}, {"bits": data}, upsert=True)

    async def compact(self, step: Compaction) -> None:
        """Each write is idempotent (exact ``_id``): a crash in between is repaired by the
        next step (journal entries behind a stored snapshot are ignored and deleted later)."""
        if step.audit:
            # before the snapshots that no longer hold them (a crash in between: the next
            # compaction archives the same entries again, same ``_id``)
            await bulk_write(
                self._audit,
                [
                    ReplaceOne(
                        {"_id": _segment_id(a.org_id, a.conversation_id, a.archived.segment)},
                        {
                            "org_id": a.org_id,
                            "conversation_id": a.conversation_id,
                            "first": a.archived.segment.first,
                            "entries": [_audit_doc(e) for e in a.archived.entries],
                            "expire_at": _bson_date(a.archived.segment.expire_at),
                        },
                        upsert=True,
                    )
                    for a in step.audit
                ],
            )
        if step.snapshots:
            await self.write_snapshots(step.snapshots)
        if step.live:
            await self.write_live_snapshots(step.live)
        if step.not_live:
            await bulk_write(
                self._live, [DeleteOne({"_id": conversation_doc_id(*k)}) for k in step.not_live]
            )
        if step.resident:
            await bulk_write(
                self._resident,
                [
                    ReplaceOne(
                        {"_id": conversation_doc_id(*r.key)},
                        {
                            "org_id": r.org_id,
                            "conversation_id": r.conversation_id,
                            "partition": r.partition,
                        },
                        upsert=True,
                    )
                    for r in step.resident
                ],
            )
        if step.not_resident:
            await bulk_write(
                self._resident,
                [DeleteOne({"_id": conversation_doc_id(*k)}) for k in step.not_resident],
            )
        if step.decisions:
            # folded into their snapshots: kept for the retention period (expire_at: MongoDB's
            # TTL index, or ``prune`` on FerretDB), then deleted with their published marks
            expiring = {
                r.decision.decision_id: _expiry(r.decision.occurred_at, self._retention)
                for r in step.decisions
            }
            await bulk_write(
                self._decisions,
                [
                    ReplaceOne(
                        {"_id": r.decision.decision_id},
                        {**_decision_doc(r), "expire_at": expiring[r.decision.decision_id]},
                        upsert=True,
                    )
                    for r in step.decisions
                ],
            )
            await bulk_write(
                self._published,
                [
                    ReplaceOne(
                        {"_id": r.decision.decision_id},
                        {
                            "partition": r.partition,
                            "compacted": True,
                            "expire_at": expiring[r.decision.decision_id],
                        },
                        upsert=True,
                    )
                    for r in step.decisions
                ],
            )
        if step.journal:
            await bulk_write(
                self._journal, [DeleteOne({"_id": "|".join(jk)}) for jk in step.journal]
            )

    async def insert_snapshots(self, rows: Sequence[SnapshotRow]) -> int:
        """Insert (existing ones are skipped): the bulk path for seeding history."""
        docs = [{"_id": conversation_doc_id(*r.key), **_snapshot_doc(r)} for r in rows]
        return await insert_ignoring_duplicates(self._snapshots, docs)

    async def prune_audit(self, now: datetime, *, limit: int = 640) -> int:
        """Delete up to ``limit`` archived audit segments expired at ``now`` (what MongoDB's
        TTL index does by itself). Returns how many went."""
        expired = [
            d["_id"]
            async for d in self._audit.find({"expire_at": {"$lt": now}}, {"_id": 1}).limit(limit)
        ]
        if expired:
            await bulk_write(self._audit, [DeleteOne({"_id": i}) for i in expired])
        return len(expired)

    async def prune(self, now: datetime, *, limit: int = 640) -> int:
        """Delete up to ``limit`` compacted decisions (and their published marks) whose
        retention ended; drop the retired ``sweeps`` collection. Returns how many went."""
        if "sweeps" in await self._db.list_collection_names():
            await self._db.drop_collection("sweeps")
        expired = [
            d["_id"]
            async for d in self._published.find(
                {"compacted": True, "expire_at": {"$lt": now}}, {"_id": 1}
            ).limit(limit)
        ]
        if expired:
            await bulk_write(self._decisions, [DeleteOne({"_id": i}) for i in expired])
            await bulk_write(self._published, [DeleteOne({"_id": i}) for i in expired])
        return len(expired)

    async def write_snapshots(self, rows: Sequence[SnapshotRow]) -> None:
        """Replace (upsert) by exact ``_id``."""
        await bulk_write(
            self._snapshots,
            [
                ReplaceOne({"_id": conversation_doc_id(*r.key)}, _snapshot_doc(r), upsert=True)
                for r in rows
            ],
        )

    async def write_views(
        self, views: Sequence[ConversationView], *, new_keys: set[ConversationKey]
    ) -> None:
        fresh: list[Doc] = []
        existing: list[Doc] = []
        for v in views:
            key = (v.state.org_id, v.state.conversation_id)
            (fresh if key in new_keys else existing).append(_view_doc(v))
        if fresh:
            try:
                await insert_many(self._views, fresh)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                existing.extend(fresh[e["index"]] for e in errors)
        if existing:
            await bulk_write(
                self._views, [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in existing]
            )

    async def get_view(self, org_id: str, conversation_id: str) -> ConversationView | None:
        d = await self._views.find_one({"_id": conversation_doc_id(org_id, conversation_id)})
        return _view_from(d) if d is not None else None

    async def audit_segments(
        self, org_id: str, conversation_id: str, firsts: Sequence[int]
    ) -> dict[int, tuple[AuditEntry, ...]]:
        ids = [f"{conversation_doc_id(org_id, conversation_id)}|{f}" for f in firsts]
        return {
            int(d["first"]): tuple(_audit_from(a) for a in d.get("entries", []))
            for d in await find_by_ids(self._audit, ids)
        }

    async def list_views(
        self,
        org_id: str,
        *,
        queue: str | None,
        assignee_id: str | None,
        page_size: int,
        page_token: str,
    ) -> Page:
        query: Doc = {"org_id": org_id}
        if queue is not None:
            query["queue"] = queue
        if assignee_id is not None:
            query["assignee_id"] = assignee_id
        if page_token:
            query["conversation_id"] = {"$gt": page_token}
        docs = await (
            self._views.find(query, {"audit": 0})
            .sort("conversation_id", ASCENDING)
            .limit(page_size + 1)
            .to_list(None)
        )
        more = len(docs) > page_size
        views = [_view_from(d) for d in docs[:page_size]]
        return Page(views, views[-1].state.conversation_id if more and views else "")

    # -- presence -------------------------------------------------------------------------------

    async def record_presence(self, org_id: str, agent_id: str, entry: PresenceEntry) -> None:
        # one writer per agent (owner of its presence partition); $addToSet of the identical
        # entry makes a redelivery a no-op. The document comes back, so the entries past the
        # timeline's retention (``domain.timeline``) go right after.
        key = f"{org_id}|{agent_id}"
        doc = await self._presence.find_one_and_update(
            {"_id": key},
            {
                "$set": {"org_id": org_id, "agent_id": agent_id},
                "$addToSet": {
                    "events": {
                        "id": entry.event_id,
                        "type": entry.event_type,
                        "at": _ts(entry.occurred_at),
                        "in": entry.signed_in,
                    }
                },
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # not with upsert and ReturnDocument.AFTER
            return
        expired = set(expired_entries(_timeline(doc), self._timeline_retention))
        if expired:
            # $pullAll of the stored elements as they came back: FerretDB's $pull cannot
            # match a field inside an array element, exact elements it can (so can MongoDB)
            stale = [e for e in doc["events"] if e["id"] in expired]
            await self._presence.update_one({"_id": key}, {"$pullAll": {"events": stale}})

    async def timelines(self, agents: Iterable[AgentKey]) -> dict[AgentKey, list[PresenceEntry]]:
        ids = [f"{o}|{a}" for o, a in agents]
        out: dict[AgentKey, list[PresenceEntry]] = {}
        if not ids:
            return out
        for d in await find_by_ids(self._presence, ids):
            out[(d["org_id"], d["agent_id"])] = sorted(_timeline(d), key=lambda p: p.sort_key)
        return out

    # -- settings -------------------------------------------------------------------------------

    async def settings(self, org_ids: Iterable[str]) -> dict[str, SettingsHistory]:
        ids = list(org_ids)
        if not ids:
            return {}
        return {d["_id"]: _history(d) for d in await find_by_ids(self._settings, ids)}

    async def append_setting(self, org_id: str, change: SettingChange) -> SettingsHistory:
        return await upsert(lambda: self._append_setting(org_id, change))

    async def _append_setting(self, org_id: str, change: SettingChange) -> SettingsHistory:
        # one admin call per change; the document comes back, so the changes past the
        # history's retention (``domain.timeline``) go right after, as in a presence timeline
        doc = await self._settings.find_one_and_update(
            {"_id": org_id},
            {
                "$push": {
                    "history": {
                        "from": _ts(change.effective_from),
                        "enabled": change.remove_assignment_on_sign_out,
                        "by": change.changed_by,
                    }
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # not with upsert and ReturnDocument.AFTER
            return SettingsHistory((change,))
        stored = doc.get("history", [])
        expired = expired_changes(_changes(stored), self._settings_retention)
        kept = [h for i, h in enumerate(stored) if i not in expired]
        # $pullAll removes every element equal to one given: never one equal to a kept one
        stale = [h for i, h in enumerate(stored) if i in expired and h not in kept]
        if stale:
            await self._settings.update_one({"_id": org_id}, {"$pullAll": {"history": stale}})
        return SettingsHistory(tuple(_changes([h for h in stored if h not in stale])))


def _timeline(d: Doc) -> list[PresenceEntry]:
    entries = {
        e["id"]: PresenceEntry(e["id"], e["type"], _dt(e["at"]), bool(e["in"]))
        for e in d.get("events", [])
    }
    return list(entries.values())


def _changes(stored: list[Doc]) -> list[SettingChange]:
    return [SettingChange(_dt(h["from"]), bool(h["enabled"]), h.get("by", "")) for h in stored]


def _history(d: Doc) -> SettingsHistory:
    return SettingsHistory(tuple(_changes(d.get("history", []))))


def _journal_doc(r: JournalRow) -> Doc:
    """One journal entry: ``_id`` and ``partition`` (what the queries use) as fields, the
    rest as one JSON string, FerretDB converting every field it writes or returns. Measured
    on FerretDB alone (its own CPU, 20,000 entries): inserting 2.9 s with a field per value,
    1.0-1.3 s packed; the take-over's scan 5.0-5.4 s against 2.0-2.1 s; packing costs
    ~5 us per entry here. The fields only some entries have are stored only when set (older
    journals lack them). Built field by field: one per event the owner takes in."""
    e = r.entry
    doc: Doc = {
        "org_id": r.org_id,
        "conversation_id": r.conversation_id,
        "event_id": e.event_id,
        "event_type": e.event_type,
        "kind": e.kind.value,
        "at": _ts(e.occurred_at),
        "actor": e.actor,
        "assignee_id": e.assignee_id,
        "topic": r.topic,
    }
    if e.channel_id is not None:
        doc["channel_id"] = e.channel_id
    if e.reason is not None:
        doc["reason"] = e.reason
    if e.cause_event_id is not None:
        doc["cause_event_id"] = e.cause_event_id
    if e.cause_event_type is not None:
        doc["cause_event_type"] = e.cause_event_type
    return _packed(
        {"_id": f"{r.org_id}|{r.conversation_id}|{e.event_id}", "partition": r.partition}, doc
    )


def _audit_doc(a: AuditEntry) -> Doc:
    return {
        "kind": a.kind.value,
        "at": _ts(a.occurred_at),
        "actor": a.actor,
        "event_id": a.event_id,
        "event_type": a.event_type,
        "from_queue": a.from_queue.value if a.from_queue else None,
        "to_queue": a.to_queue.value if a.to_queue else None,
        "assignee_id": a.assignee_id,
        "previous_assignee_id": a.previous_assignee_id,
        "reason": a.reason.value if a.reason else None,
        "decision_id": a.decision_id,
        "assign_reason": a.assign_reason,
    }


def _audit_from(d: Doc) -> AuditEntry:
    return AuditEntry(
        AuditKind(d["kind"]),
        _dt(d["at"]),
        d["actor"],
        d["event_id"],
        d["event_type"],
        Queue(d["from_queue"]) if d.get("from_queue") else None,
        Queue(d["to_queue"]) if d.get("to_queue") else None,
        d.get("assignee_id"),
        d.get("previous_assignee_id"),
        Reason(d["reason"]) if d.get("reason") else None,
        d.get("decision_id"),
        d.get("assign_reason"),
    )


def _view_doc(v: ConversationView) -> Doc:
    s = v.state
    return {
        "_id": conversation_doc_id(s.org_id, s.conversation_id),
        "org_id": s.org_id,
        "conversation_id": s.conversation_id,
        "partition": v.partition,
        **_state_doc(s),
        "audit": [_audit_doc(a) for a in v.audit],
        "audit_base": v.archive.base,
        "audit_segments": [_segment_doc(g) for g in v.archive.segments],
    }


def _view_from(d: Doc) -> ConversationView:
    state = _state_from(d["org_id"], d["conversation_id"], d)
    archive = AuditArchive(
        int(d.get("audit_base", 0)),
        tuple(_segment_from(g) for g in d.get("audit_segments", [])),
    )
    return ConversationView(
        d["partition"], state, tuple(_audit_from(a) for a in d.get("audit", [])), archive
    )


def _decision_doc(r: DecisionRow) -> Doc:
    """``_id`` and ``partition`` as fields, the rest as one JSON string (as the journal's:
    FerretDB's insert of 1,000 decisions cost it 0.15-0.17 s of CPU with a field per value,
    0.06-0.09 s packed; a take-over scans them)."""
    d = r.decision
    return _packed(
        {"_id": d.decision_id, "partition": r.partition},
        {
            "org_id": d.org_id,
            "conversation_id": d.conversation_id,
            "previous_assignee_id": d.previous_assignee_id,
            "assignment_id": d.assignment_id,
            "reason": d.reason.value,
            "cause_event_id": d.cause_event_id,
            "cause_event_type": d.cause_event_type,
            "occurred_at": _ts(d.occurred_at),
            "cause_rank": d.cause_rank,
        },
    )


def _expiry(occurred_at: datetime, retention: timedelta) -> datetime:
    return _bson_date(occurred_at + retention)


def _bson_date(at: datetime) -> datetime:
    """A BSON date (what a TTL index reads), naive UTC as PyMongo stores it."""
    return at.astimezone(UTC).replace(tzinfo=None)


def _segment_id(org_id: str, conversation_id: str, segment: AuditSegment) -> str:
    return f"{conversation_doc_id(org_id, conversation_id)}|{segment.first}"


def _segment_doc(g: AuditSegment) -> Doc:
    return {"first": g.first, "count": g.count, "expire_at": _ts(g.expire_at)}


def _segment_from(d: Doc) -> AuditSegment:
    return AuditSegment(int(d["first"]), int(d["count"]), _dt(d["expire_at"]))


def _archive_doc(a: AuditArchive) -> Doc:
    c = a.carry
    return {
        "base": a.base,
        "segments": [_segment_doc(g) for g in a.segments],
        "carry": {
            "queue": c.queue.value if c.queue else None,
            "assignee_id": c.assignee,
            "waiting_since": _audit_doc(c.waiting_since) if c.waiting_since else None,
        },
    }


def _archive_from(d: Doc | None) -> AuditArchive | None:
    if not d:
        return None
    c = d.get("carry") or {}
    carry = WaitingReplay(
        Queue(c["queue"]) if c.get("queue") else None,
        c.get("assignee_id"),
        _audit_from(c["waiting_since"]) if c.get("waiting_since") else None,
    )
    segments = tuple(_segment_from(g) for g in d.get("segments", []))
    return AuditArchive(int(d.get("base", 0)), segments, carry)


def _state_doc(s: ConversationState) -> Doc:
    return {
        "queue": s.queue.value if s.queue else None,
        "assignee_id": s.assignee_id,
        "assignment_id": s.assignment_id,
        "assigned_at": _opt_ts(s.assigned_at),
        "assigned_by": s.assigned_by,
        "assignee_signed_in_at_assignment": s.assignee_signed_in_at_assignment,
        "assignee_signed_out_since": s.assignee_signed_out_since,
        "updated_at": _opt_ts(s.updated_at),
    }


def _state_from(org_id: str, conversation_id: str, d: Doc) -> ConversationState:
    return ConversationState(
        org_id=org_id,
        conversation_id=conversation_id,
        queue=Queue(d["queue"]) if d.get("queue") else None,
        assignee_id=d.get("assignee_id"),
        assignment_id=d.get("assignment_id"),
        assigned_at=_opt_dt(d.get("assigned_at")),
        assigned_by=d.get("assigned_by"),
        assignee_signed_in_at_assignment=d.get("assignee_signed_in_at_assignment"),
        assignee_signed_out_since=bool(d.get("assignee_signed_out_since", False)),
        updated_at=_opt_dt(d.get("updated_at")),
    )


def _snapshot_fields(r: SnapshotRow) -> Doc:
    snap = r.snapshot
    return {
        "org_id": r.org_id,
        "conversation_id": r.conversation_id,
        "partition": r.partition,
        "horizon": _ts(snap.horizon),
        "state": _state_doc(snap.state),
        "audit": [_audit_doc(a) for a in snap.audit],
        "folded": snap.folded,
        "channel_id": snap.channel_id,
        "latest_at": _opt_ts(snap.latest_at),
        "archive": _archive_doc(snap.archive or NO_ARCHIVE),
    }


def _snapshot_doc(r: SnapshotRow) -> Doc:
    """The keys in the open, the rest as one JSON string: FerretDB converts every nested
    field of a document it reads (measured: a scan of 1,667 snapshots took 12.5 s nested,
    0.64 s as one string, on the loaded machine), so a take-over reads these ~20x faster."""
    fields = _snapshot_fields(r)
    keys = {k: fields[k] for k in ("org_id", "conversation_id", "partition")}
    return _packed(keys, {k: v for k, v in fields.items() if k not in keys})


def _packed(keys: Doc, rest: Doc) -> Doc:
    """A document of ``keys`` (what queries and indexes use) in the open and ``rest`` as one
    JSON string: FerretDB converts every field it writes or returns, so one string is far
    cheaper for it than a field per value (journal, decisions, snapshots). Encoded by
    pydantic's core (~1 us a journal entry against ~9 us for ``json.dumps``: one per event
    the owner takes in); any JSON reader reads it (``_unpacked``)."""
    return {**keys, "packed": to_json(rest).decode()}


def _unpacked(d: Doc) -> Doc:
    """The fields of a ``_packed`` document (older documents, a field per value, as they are)."""
    return {**d, **json.loads(d["packed"])} if "packed" in d else d


def _snapshot_from(d: Doc) -> SnapshotRow:
    d = _unpacked(d)
    org_id, conversation_id = d["org_id"], d["conversation_id"]
    snap = Snapshot(
        _state_from(org_id, conversation_id, d["state"]),
        tuple(_audit_from(a) for a in d.get("audit", [])),
        _dt(d["horizon"]),
        folded=int(d.get("folded", 0)),
        channel_id=d.get("channel_id"),
        latest_at=_opt_dt(d.get("latest_at")),
        archive=_archive_from(d.get("archive")),
    )
    return SnapshotRow(org_id, conversation_id, int(d["partition"]), snap)
