"""PyMongo (async) implementation of ``PresenceStore``.

Collections (database ``inbox_presence``):
- ``sessions``: one document per *live* session, ``_id`` = session id; only its heartbeats
  update it; deleted once the session ended;
- ``session_ends``: ``_id`` = session id; inserted once (unique ``_id``) - the claim that ends
  a session, with reason and end time;
- ``outbox``: events to publish. Transition ``n`` of an agent has ``_id`` =
  ``<org>\\x1f<agent>\\x1ft<n>``; inserting it *is* claiming the transition;
- ``heads``: per agent, a hint of the latest transition (a lower bound: readers probe the
  next sequence numbers by ``_id``);
- ``availability``: per agent, the chosen availability;
- ``service_state``: the liveness mark used to detect full outages.

Every filter on the request path is by ``_id`` (what FerretDB/SQLite serves from an index:
an exact ``{_id: <string>}``, and on the devstack's patched FerretDB ``{_id: {$in: [...]}}``
too). Reads by ``_id`` of concurrent calls go out together: per collection, the point reads
that queue up while one query runs are the next query (a ``KeyedBatcher``: one ``$in`` per
round, ``find_by_ids``), and a caller's read always starts after its call, so it sees what
the caller wrote before. Only the background sweeper/relay scans and the transitions'
look-up of an agent's sessions use other filters, and they are reads (never a scan inside a
write). Writes go through a ``WriteGate`` (see ``write_gate``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from inbox_contracts.events import Availability
from inbox_kit.mongo import (
    IDS_PER_QUERY,
    chunked,
    find_by_ids,
    queries_use_secondary_indexes,
    upsert,
)
from pymongo import ASCENDING, DeleteOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from presence_service.adapters.group_commit import NO_LINGER, GroupCommit, Linger
from presence_service.adapters.write_gate import WriteGate
from presence_service.domain.model import (
    KEY_SEPARATOR,
    AgentRef,
    EndReason,
    Session,
    SessionEnd,
    Transition,
    transition_key,
)
from presence_service.service_layer.batching import KeyedBatcher
from presence_service.service_layer.io_priority import background_io
from presence_service.service_layer.ports import (
    AgentAvailability,
    Lease,
    OutboxRecord,
    ReplicaFloor,
)

Doc = dict[str, Any]
log = logging.getLogger(__name__)

#: A pending marker whose record never got stored is dropped after this long.
STALE_MARKER = timedelta(hours=1)


def _agent_from(doc: Doc) -> AgentRef:
    return AgentRef(doc["org_id"], doc["agent_id"])


def _session_doc(s: Session) -> Doc:
    """Only what cannot be derived: the agent is its ``agent_key`` (its org and id are stored
    apart only when the org id itself contains the separator), an empty description and no
    teams are left out - every field is work for FerretDB on each insert."""
    doc: Doc = {
        "_id": s.session_id,
        "agent_key": s.agent.key,
        "started_at": s.started_at,
        "last_heartbeat": s.last_heartbeat,
        "expires_at": s.expires_at,
        "replica": s.replica,
    }
    if KEY_SEPARATOR in s.agent.org_id:
        doc["org_id"], doc["agent_id"] = s.agent.org_id, s.agent.agent_id
    if s.client_description:
        doc["client_description"] = s.client_description
    if s.teams:
        doc["teams"] = list(s.teams)
    return doc


def _session_agent(doc: Doc) -> AgentRef:
    if "org_id" in doc:  # also every session stored before the agent_key-only layout
        return _agent_from(doc)
    org_id, _, agent_id = doc["agent_key"].partition(KEY_SEPARATOR)
    return AgentRef(org_id, agent_id)


def _session(doc: Doc) -> Session:
    return Session(
        session_id=doc["_id"],
        agent=_session_agent(doc),
        started_at=doc["started_at"],
        last_heartbeat=doc["last_heartbeat"],
        expires_at=doc["expires_at"],
        client_description=doc.get("client_description", ""),
        replica=doc.get("replica", ""),
        teams=tuple(doc.get("teams", ())),
    )


def _end(doc: Doc) -> SessionEnd:
    return SessionEnd(doc["_id"], _agent_from(doc), EndReason(doc["reason"]), doc["ended_at"])


def _transition_fields(t: Transition) -> Doc:
    return {
        "agent_key": t.agent.key,
        "org_id": t.agent.org_id,
        "agent_id": t.agent.agent_id,
        "seq": t.seq,
        "signed_in": t.signed_in,
        "occurred_at": t.occurred_at,
        "session_id": t.session_id,
        "reason": t.reason.value if t.reason else None,
        "teams": list(t.teams),
    }


def _transition(doc: Doc) -> Transition:
    return Transition(
        agent=_agent_from(doc),
        seq=doc["seq"],
        signed_in=doc["signed_in"],
        occurred_at=doc["occurred_at"],
        session_id=doc["session_id"],
        reason=EndReason(doc["reason"]) if doc.get("reason") else None,
        teams=tuple(doc.get("teams", ())),
    )


def _outbox_fields(r: OutboxRecord) -> Doc:
    return {
        "_id": r.key,
        "topic": r.topic,
        "kafka_key": r.kafka_key,
        "event_id": r.event_id,
        "event_type": r.event_type,
        "payload": r.payload,
        "created_at": r.created_at,
        "prev_key": r.prev_key,
        "published": r.published,
    }


def _outbox(doc: Doc) -> OutboxRecord:
    return OutboxRecord(
        key=doc["_id"],
        topic=doc["topic"],
        kafka_key=bytes(doc["kafka_key"]),
        event_id=doc["event_id"],
        event_type=doc["event_type"],
        payload=bytes(doc["payload"]),
        created_at=doc["created_at"],
        prev_key=doc.get("prev_key"),
        published=bool(doc.get("published")),
        occurred_at=doc.get("occurred_at"),
    )


def _write_outcomes(n: int, exc: BulkWriteError) -> list[BaseException | None]:
    """Per item of a bulk command: None or the error of that item (duplicate keys as
    ``DuplicateKeyError``)."""
    outcomes: list[BaseException | None] = [None] * n
    for error in exc.details.get("writeErrors", []):
        code, message = error.get("code"), error.get("errmsg", "write failed")
        outcomes[error["index"]] = (
            DuplicateKeyError(message, code) if code == 11000 else RuntimeError(message)
        )
    return outcomes


#: One claim: its pending marker and the outbox document.
Claim = tuple[Doc, Doc]


@dataclass(eq=False)
class SessionInsert:
    """A session to insert, with the transition to claim once it is stored (a sign-in of a
    signed-out agent) or the outbox key to read once it is stored (``probe``: the next
    transition number of an agent signed in)."""

    session: Session
    claim: Claim | None = None
    probe: str | None = None
    #: what the probe found (set before the caller is woken)
    probed: Doc | None = None


#: Reads of one collection by ``_id``, batched across concurrent callers.
IdReads = KeyedBatcher[str, "Doc | None"]


def _id_reads(collection: Any) -> IdReads:
    async def read(ids: list[str]) -> dict[str, Doc | None]:
        found = {d["_id"]: d for d in await find_by_ids(collection, ids)}
        return {i: found.get(i) for i in ids}

    return KeyedBatcher(read, max_batch=IDS_PER_QUERY)


class _ClaimLost(Exception):
    """The session was stored; the transition claimed with it was someone else's first."""


class MongoPresenceStore:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        gate: WriteGate | None = None,
        replica_id: str = "",
        *,
        linger: Linger = NO_LINGER,
    ) -> None:
        self._db = db
        self._gate = gate or WriteGate(1)
        self.replica_id = replica_id
        self._sessions = db["sessions"]
        self._ends = db["session_ends"]
        self._outbox = db["outbox"]
        self._pending = db["outbox_pending"]
        self._heads = db["heads"]
        self._availability = db["availability"]
        self._state = db["service_state"]
        self._floors = db["progress_floors"]
        self._session_inserts = GroupCommit[SessionInsert](
            self._gate, self._insert_sessions, then=self._probe_inserted, linger=linger
        )
        self._touches = GroupCommit[tuple[str, datetime, datetime]](
            self._gate, self._touch_many, linger=linger
        )
        self._claims = GroupCommit[Claim](self._gate, self._insert_claims, linger=linger)
        self._head_writes = GroupCommit[Doc](self._gate, self._replace_heads, linger=linger)
        self._publications = GroupCommit[tuple[str, datetime]](
            self._gate, self._mark_many, linger=linger
        )
        self._end_inserts = GroupCommit[Doc](
            self._gate, lambda docs: self._insert_many(self._ends, docs), linger=linger
        )
        self._session_deletes = GroupCommit[str](self._gate, self._delete_sessions, linger=linger)
        self._hint_writes: set[asyncio.Task[None]] = set()
        # probes of the next transition numbers (sign-ins, reconciles, the hint re-probes)
        # and hint reads of concurrent calls: one ``$in`` per round instead of one read each
        self._record_reads = _id_reads(self._outbox)
        self._hint_reads = _id_reads(self._heads)
        self._session_reads = _id_reads(self._sessions)
        self._end_reads = _id_reads(self._ends)

    async def _delete_sessions(self, session_ids: list[str]) -> list[BaseException | None]:
        unique = list(dict.fromkeys(session_ids))
        if len(unique) == 1:
            await self._sessions.delete_one({"_id": unique[0]})
        else:
            await self._sessions.bulk_write([DeleteOne({"_id": s}) for s in unique], ordered=False)
        return [None] * len(session_ids)

    async def _insert_many(
        self, collection: Any, docs: list[Doc], *, ignore_duplicates: bool = False
    ) -> list[BaseException | None]:
        try:
            await collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            outcomes = _write_outcomes(len(docs), exc)
            if ignore_duplicates:
                return [None if isinstance(o, DuplicateKeyError) else o for o in outcomes]
            return outcomes
        return [None] * len(docs)

    async def _insert_sessions(self, items: list[SessionInsert]) -> list[BaseException | None]:
        """Sessions first, then the claims of those stored (a sign-in's transition: a reader
        that sees the claim sees the session), in the same gate slot: a burst of sign-ins
        costs three commands per batch, not a round trip per step per call."""
        outcomes = await self._insert_many(self._sessions, [_session_doc(i.session) for i in items])
        claiming: list[tuple[int, Claim]] = [
            (n, i.claim) for n, i in enumerate(items) if i.claim is not None and outcomes[n] is None
        ]
        if claiming:
            claimed = await self._insert_claims([claim for _, claim in claiming])
            for (n, _), outcome in zip(claiming, claimed, strict=True):
                outcomes[n] = _ClaimLost() if isinstance(outcome, DuplicateKeyError) else outcome
        return outcomes

    async def _probe_inserted(self, inserted: list[SessionInsert]) -> None:
        """The probes of the sessions just stored: one ``$in`` for the batch, sent after the
        commit (so it sees whatever was claimed before the sessions were visible) and before
        their callers are woken - one round trip per batch instead of a wake-up and a
        batched read per call."""
        probing = [i for i in inserted if i.probe is not None]
        if not probing:
            return
        found = {d["_id"]: d for d in await find_by_ids(self._outbox, [i.probe for i in probing])}
        for i in probing:
            i.probed = found.get(i.probe)

    async def _insert_claims(self, claims: list[Claim]) -> list[BaseException | None]:
        """Markers first (so the relay's scan finds a record whatever happens next), then the
        records: two commands for the whole batch."""
        marker_outcomes = await self._insert_many(
            self._pending, [m for m, _ in claims], ignore_duplicates=True
        )
        if any(o is not None for o in marker_outcomes):
            return marker_outcomes
        return await self._insert_many(self._outbox, [d for _, d in claims])

    async def _replace_heads(self, heads: list[Doc]) -> list[BaseException | None]:
        latest: dict[str, Doc] = {}
        for doc in heads:  # the same agent twice in one batch: keep the later transition
            if doc["_id"] not in latest or doc["seq"] > latest[doc["_id"]]["seq"]:
                latest[doc["_id"]] = doc
        docs = list(latest.values())
        try:
            if len(docs) == 1:  # a plain command is cheaper than a bulk of one
                await self._heads.replace_one({"_id": docs[0]["_id"]}, docs[0], upsert=True)
            else:
                await self._heads.bulk_write(
                    [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False
                )
        except DuplicateKeyError as exc:
            return [exc] * len(heads)
        except BulkWriteError as exc:
            by_id = dict(
                zip((d["_id"] for d in docs), _write_outcomes(len(docs), exc), strict=True)
            )
            return [by_id[d["_id"]] for d in heads]
        return [None] * len(heads)

    async def _mark_many(self, items: list[tuple[str, datetime]]) -> list[BaseException | None]:
        """Mark records published, then drop their pending markers (two commands)."""
        await self._outbox.bulk_write(
            [
                UpdateOne({"_id": key}, {"$set": {"published": True, "published_at": at}})
                for key, at in items
            ],
            ordered=False,
        )
        await self._pending.bulk_write([DeleteOne({"_id": key}) for key, _ in items], ordered=False)
        return [None] * len(items)

    async def _touch_many(
        self, touches: list[tuple[str, datetime, datetime]]
    ) -> list[BaseException | None]:
        latest: dict[str, tuple[datetime, datetime]] = {}
        for session_id, beat, expires in touches:  # the same session twice: keep the latest
            if session_id not in latest or beat > latest[session_id][0]:
                latest[session_id] = (beat, expires)
        writes = [
            (
                {"_id": sid},
                {
                    "$set": {
                        "last_heartbeat": beat,
                        "expires_at": expires,
                        "replica": self.replica_id,
                    }
                },
            )
            for sid, (beat, expires) in latest.items()
        ]
        if len(writes) == 1:
            await self._sessions.update_one(*writes[0])
        else:
            await self._sessions.bulk_write([UpdateOne(f, u) for f, u in writes], ordered=False)
        return [None] * len(touches)

    async def persist_heartbeats(self, progress: list[tuple[str, datetime, datetime]]) -> set[str]:
        """Write heartbeat progress back (bulk ``_id`` updates, <= ``MAX_BULK`` per command);
        returns the sessions no longer stored (ended meanwhile, maybe by another replica)."""
        missing: set[str] = set()
        for chunk in chunked(progress):
            ops = [
                UpdateOne(
                    {"_id": sid},
                    {
                        "$set": {
                            "last_heartbeat": beat,
                            "expires_at": exp,
                            "replica": self.replica_id,
                        }
                    },
                )
                for sid, beat, exp in chunk
            ]
            async with self._gate.slot():
                result = await self._sessions.bulk_write(ops, ordered=False)
            if result.matched_count < len(ops):  # rare: find which ones are gone
                ids = [sid for sid, _, _ in chunk]
                found = {d["_id"] for d in await find_by_ids(self._sessions, ids, {"_id": 1})}
                missing |= set(ids) - found
        return missing

    async def ensure_indexes(self) -> None:
        """The indexes of the non-``_id`` queries (sweeper, relay, look-ups by agent, the
        progress leftovers, ``ListSignedInAgents``) - on MongoDB. Not on FerretDB: it never
        uses them for a query and would maintain them on every write (measured: the three
        on ``sessions`` cost ~20 % of FerretDB's CPU per inserted session)."""
        if not await queries_use_secondary_indexes(self._db):
            return
        await self._sessions.create_index([("agent_key", ASCENDING)])
        await self._sessions.create_index([("expires_at", ASCENDING)])
        await self._ends.create_index([("agent_key", ASCENDING), ("ended_at", ASCENDING)])
        await self._outbox.create_index([("published", ASCENDING), ("created_at", ASCENDING)])
        await self._pending.create_index([("created_at", ASCENDING)])
        await self._pending.create_index([("replica", ASCENDING), ("occurred_at", ASCENDING)])
        await self._sessions.create_index([("replica", ASCENDING), ("expires_at", ASCENDING)])
        await self._heads.create_index(
            [("org_id", ASCENDING), ("signed_in", ASCENDING), ("agent_id", ASCENDING)]
        )

    # ------------------------------------------------------------------ sessions
    async def insert_session(
        self, session: Session, claim: tuple[Transition, OutboxRecord] | None = None
    ) -> bool:
        try:
            await self._session_inserts.submit(
                SessionInsert(session, self._claim_docs(*claim) if claim is not None else None)
            )
        except _ClaimLost:
            return False
        if claim is not None:
            self._after_claim(claim[0])
        return True

    async def insert_session_then_head(self, session: Session, known: Transition) -> Transition:
        insert = SessionInsert(session, probe=transition_key(session.agent, known.seq + 1))
        await self._session_inserts.submit(insert)
        if insert.probed is None:
            return known
        return await self._probe_forward(session.agent, _transition(insert.probed)) or known

    async def get_session(self, session_id: str) -> Session | None:
        doc = await self._session_reads.submit(session_id)
        return _session(doc) if doc else None

    async def touch_session(
        self, session_id: str, last_heartbeat: datetime, expires_at: datetime
    ) -> None:
        await self._touches.submit((session_id, last_heartbeat, expires_at))

    async def delete_session(self, session_id: str) -> None:
        await self._session_deletes.submit(session_id)

    async def sessions_of(self, agents: list[AgentRef]) -> list[Session]:
        if not agents:
            return []
        keys = [a.key for a in agents]
        query: Doc = {"agent_key": keys[0]} if len(keys) == 1 else {"agent_key": {"$in": keys}}
        return [_session(d) async for d in self._sessions.find(query)]

    async def overdue_sessions(self, before: datetime, limit: int) -> list[Session]:
        cursor = self._sessions.find({"expires_at": {"$lt": before}}).limit(limit)
        return [_session(d) async for d in cursor]

    # ------------------------------------------------------------------ ends
    async def claim_end(self, end: SessionEnd) -> bool:
        try:
            await self._end_inserts.submit(
                {
                    "_id": end.session_id,
                    "agent_key": end.agent.key,
                    "org_id": end.agent.org_id,
                    "agent_id": end.agent.agent_id,
                    "reason": end.reason.value,
                    "ended_at": end.ended_at,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def get_end(self, session_id: str) -> SessionEnd | None:
        doc = await self._end_reads.submit(session_id)
        return _end(doc) if doc else None

    async def ended_ids(self, session_ids: list[str]) -> set[str]:
        return {d["_id"] for d in await find_by_ids(self._ends, session_ids, {"_id": 1})}

    async def ends_since(self, since: Mapping[AgentRef, datetime]) -> list[SessionEnd]:
        """One query for all the agents (a scan on FerretDB, whatever the number of agents),
        filtered to each agent's own ``since`` here."""
        if not since:
            return []
        keys = {a.key: at for a, at in since.items()}
        agent_filter: Any = next(iter(keys)) if len(keys) == 1 else {"$in": list(keys)}
        query = {"agent_key": agent_filter, "ended_at": {"$gte": min(keys.values())}}
        ends = [(d["agent_key"], _end(d)) async for d in self._ends.find(query)]
        return [end for key, end in ends if end.ended_at >= keys[key]]

    # ------------------------------------------------------------------ transitions / outbox
    async def head_after(self, agent: AgentRef, known: Transition | None) -> Transition | None:
        return await self._probe_forward(agent, known)

    async def head_hint(self, agent: AgentRef) -> Transition | None:
        hint = await self._hint_reads.submit(agent.key)
        return _transition(hint) if hint else None

    async def head_hints(self, limit: int) -> list[Transition]:
        return [_transition(d) async for d in self._heads.find({}).limit(limit)]

    async def _probe_forward(self, agent: AgentRef, latest: Transition | None) -> Transition | None:
        seq = latest.seq if latest else 0
        while True:
            doc = await self._record_reads.submit(transition_key(agent, seq + 1))
            if doc is None:
                return latest
            latest = _transition(doc)
            seq = latest.seq

    async def head(self, agent: AgentRef) -> Transition | None:
        known = await self.head_hint(agent)
        latest = await self._probe_forward(agent, known)
        if latest is not None and (known is None or latest.seq > known.seq):
            await self._update_head(latest)
        return latest

    async def heads(self, agents: list[AgentRef]) -> dict[AgentRef, Transition]:
        hints = await asyncio.gather(*(self.head_hint(a) for a in agents))
        known = dict(zip(agents, hints, strict=True))
        latest = await asyncio.gather(*(self._probe_forward(a, known[a]) for a in agents))
        return {a: t for a, t in zip(agents, latest, strict=True) if t is not None}

    async def _update_head(self, t: Transition) -> None:
        """Move the hint to ``t`` (exact-``_id`` writes only, grouped). A slower writer may
        briefly move it back; it then re-probes and moves it forward again, so once the writers
        are done the hint is the head. Readers probe forward anyway: a stale hint only costs a
        read, except for ``signed_in_heads`` (documented lag)."""
        while True:
            fields = _transition_fields(t)
            del fields["agent_key"]
            try:
                await self._head_writes.submit({"_id": t.agent.key, **fields})
            except DuplicateKeyError:  # a concurrent first upsert won: replace it now
                continue
            newer = await self._record_reads.submit(transition_key(t.agent, t.seq + 1))
            if newer is None:
                return
            t = await self._probe_forward(t.agent, _transition(newer)) or _transition(newer)

    def _marker(self, record: OutboxRecord) -> Doc:
        """The "to publish" note stored *before* the record, so the relay's periodic scan
        reads this small collection instead of the whole (ever-growing) outbox; it names the
        replica and the event time (the progress watermark holds back on it)."""
        return {
            "_id": record.key,
            "created_at": record.created_at,
            "replica": self.replica_id,
            "occurred_at": record.occurred_at or record.created_at,
        }

    def _claim_docs(self, transition: Transition, record: OutboxRecord) -> Claim:
        doc = _outbox_fields(record) | _transition_fields(transition) | {"kind": "transition"}
        return self._marker(record), doc

    async def claim_transition(self, transition: Transition, record: OutboxRecord) -> bool:
        try:
            await self._claims.submit(self._claim_docs(transition, record))
        except DuplicateKeyError:
            return False
        self._after_claim(transition)
        return True

    def _after_claim(self, transition: Transition) -> None:
        # The hint is a lower bound readers probe forward from: move it off the request path
        # (and behind the request path's writes in the gate: a burst's claims go first).
        with background_io():
            task = asyncio.create_task(self._update_head(transition))
        self._hint_writes.add(task)
        task.add_done_callback(self._hint_written)

    def _hint_written(self, task: asyncio.Task[None]) -> None:
        self._hint_writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("head hint write failed (readers probe past it)", exc_info=task.exception())

    async def signed_in_heads(
        self, org_id: str, after_agent_id: str, limit: int
    ) -> list[Transition]:
        query: Doc = {"org_id": org_id, "signed_in": True}
        if after_agent_id:
            query["agent_id"] = {"$gt": after_agent_id}
        cursor = self._heads.find(query).sort("agent_id", ASCENDING).limit(limit)
        return [_transition(d) async for d in cursor]

    async def insert_outbox(self, record: OutboxRecord) -> None:
        key, _, _ = record.key.rpartition(KEY_SEPARATOR)
        doc = _outbox_fields(record) | {"kind": "event", "agent_key": key}
        await self._claims.submit((self._marker(record), doc))

    async def get_outbox(self, key: str) -> OutboxRecord | None:
        doc = await self._record_reads.submit(key)
        return _outbox(doc) if doc else None

    async def unpublished(
        self, created_before: datetime, limit: int, *, full_scan: bool = False
    ) -> list[OutboxRecord]:
        if full_scan:  # startup: also records stored before pending markers existed
            query = {"published": False, "created_at": {"$lt": created_before}}
            docs = [d async for d in self._outbox.find(query).limit(limit)]
        else:
            cursor = self._pending.find({"created_at": {"$lt": created_before}}).limit(limit)
            markers = [m async for m in cursor]
            stored = {
                d["_id"]: d for d in await find_by_ids(self._outbox, [m["_id"] for m in markers])
            }
            docs = []
            for marker in markers:
                doc = stored.get(marker["_id"])
                if doc is not None and not doc.get("published"):
                    docs.append(doc)
                elif doc is not None or marker["created_at"] < created_before - STALE_MARKER:
                    # published (its marker delete was lost), or a claim that never stored
                    # its record (lost a race, or the process died in between)
                    await self._unmark_pending(marker["_id"])
        docs.sort(key=lambda d: (d.get("agent_key", ""), d.get("seq", 0), d["created_at"]))
        return [_outbox(d) for d in docs]

    async def _unmark_pending(self, key: str) -> None:
        async with self._gate.slot():
            await self._pending.delete_one({"_id": key})

    async def mark_published(self, key: str, at: datetime) -> None:
        await self._publications.submit((key, at))

    # ------------------------------------------------------------------ availability
    async def set_availability(self, agent: AgentRef, value: AgentAvailability) -> None:
        async with self._gate.slot():
            await upsert(
                lambda: self._availability.update_one(
                    {"_id": agent.key},
                    {
                        "$set": {
                            "org_id": agent.org_id,
                            "agent_id": agent.agent_id,
                            "availability": value.availability.value,
                            "changed_at": value.changed_at,
                        }
                    },
                    upsert=True,
                )
            )

    async def availabilities(self, agents: list[AgentRef]) -> dict[AgentRef, AgentAvailability]:
        docs = await find_by_ids(self._availability, [a.key for a in agents])
        return {
            _agent_from(d): AgentAvailability(Availability(d["availability"]), d["changed_at"])
            for d in docs
        }

    # ------------------------------------------------------------------ liveness
    async def mark_alive(self, now: datetime) -> datetime | None:
        doc = await self._state.find_one({"_id": "alive"})
        async with self._gate.slot(urgent=True):  # starved, it would look like an outage
            await upsert(
                lambda: self._state.update_one({"_id": "alive"}, {"$set": {"at": now}}, upsert=True)
            )
        return doc["at"] if doc else None

    async def outage_resumed_at(self) -> datetime | None:
        doc = await self._state.find_one({"_id": "outage"})
        return doc["resumed_at"] if doc else None

    async def record_outage_resumed(self, at: datetime) -> None:
        async with self._gate.slot():
            await upsert(
                lambda: self._state.update_one(
                    {"_id": "outage"}, {"$set": {"resumed_at": at}}, upsert=True
                )
            )

    # ------------------------------------------------------------------ progress
    async def write_floor(self, floor: datetime, at: datetime) -> None:
        """This replica's progress floor as of ``at`` (see ``service_layer.progress``)."""
        # not gated: a floor stuck behind a burst of writes would make this replica look
        # dead to the marks publisher (one tiny concurrent write is worth SQLite's retry)
        await self._floors.replace_one(
            {"_id": self.replica_id}, {"floor": floor, "at": at}, upsert=True
        )

    async def drop_floor(self, replica_id: str) -> None:
        async with self._gate.slot():
            await self._floors.delete_one({"_id": replica_id})

    async def floors(self) -> list[ReplicaFloor]:
        return [ReplicaFloor(d["_id"], d["floor"], d["at"]) async for d in self._floors.find({})]

    async def orphan_floor(self, replica_id: str) -> datetime | None:
        """The earliest event time a transition could still get from what a dead replica left
        behind: the stored deadline of its sessions nobody took over, and its unpublished
        records. None once nothing is left."""
        session = await self._sessions.find_one(
            {"replica": replica_id}, {"expires_at": 1}, sort=[("expires_at", ASCENDING)]
        )
        marker = await self._pending.find_one(
            {"replica": replica_id}, {"occurred_at": 1}, sort=[("occurred_at", ASCENDING)]
        )
        found = [d[f] for d, f in ((session, "expires_at"), (marker, "occurred_at")) if d]
        return min(found) if found else None

    async def take_lease(
        self,
        name: str,
        holder: str,
        now: datetime,
        until: datetime,
        seen: Mapping[str, datetime] | None = None,
    ) -> bool:
        """Hold the named lease until ``until`` if it is free, expired or already ours. Not
        atomic on FerretDB: two holders may overlap briefly (callers must tolerate that)."""
        doc = await self._state.find_one({"_id": name})
        if doc is not None and doc["holder"] != holder and doc["until"] > now:
            return False
        fields: dict[str, Any] = {"holder": holder, "until": until, "seen": dict(seen or {})}
        # urgent: a renewal queued behind a burst of writes lets the lease lapse, the holder
        # flaps, and every follower's floor ages meanwhile
        async with self._gate.slot(urgent=True):
            await upsert(
                lambda: self._state.update_one({"_id": name}, {"$set": fields}, upsert=True)
            )
        return True

    async def lease(self, name: str) -> Lease | None:
        doc = await self._state.find_one({"_id": name})
        if doc is None:
            return None
        return Lease(doc["holder"], doc["until"], doc.get("seen") or {})

    # ------------------------------------------------------------------ retention
    async def ensure_ttl_indexes(self, retention: timedelta) -> bool:
        """MongoDB drops old session ends by itself; FerretDB has no TTL (the pruning task
        covers both). Returns whether the server accepted the TTL index."""
        try:
            await self._ends.create_index(
                [("ended_at", ASCENDING)],
                expireAfterSeconds=int(retention.total_seconds()),
                name="ended_at_ttl",
            )
        except Exception:
            return False
        return True

    async def prune(self, cutoff: datetime, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` published outbox records and session ends older than
        ``cutoff``; an agent's latest transition (its head) is always kept: its number is
        where the log continues and its event id must never be reused. Returns the counts."""
        records = [
            d
            async for d in self._outbox.find(
                {"published": True, "created_at": {"$lt": cutoff}},
                {"_id": 1, "kind": 1, "agent_key": 1, "seq": 1},
            ).limit(limit)
        ]
        agents = [d["agent_key"] for d in records if d.get("kind") == "transition"]
        hints = await find_by_ids(self._heads, agents, {"seq": 1})
        heads: dict[str, int] = {h["_id"]: h["seq"] for h in hints}
        doomed: list[str] = []
        for d in records:
            if d.get("kind") == "transition" and d["seq"] >= heads.get(d["agent_key"], 0):
                continue  # the head (or newer than the hint): kept
            doomed.append(d["_id"])
        ends = [
            d["_id"]
            async for d in self._ends.find({"ended_at": {"$lt": cutoff}}, {"_id": 1}).limit(limit)
        ]
        for collection, ids in ((self._outbox, doomed), (self._ends, ends)):
            for chunk in chunked(ids):
                async with self._gate.slot():
                    await collection.bulk_write([DeleteOne({"_id": i}) for i in chunk])
        return len(doomed), len(ends)
