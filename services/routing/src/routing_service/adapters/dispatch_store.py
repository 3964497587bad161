"""MongoDB storage of automatic assignment: dispatcher snapshots, read views, settings.

Snapshots are shaped by FerretDB v1 (exact-``_id`` reads and writes only, no transactions):
a partition's state is written as numbered chunk documents of a new *generation*, then the
header (``_id`` = partition) is replaced to point at it (the switch), then the previous
generation's chunks are deleted by exact ``_id``. A crash mid-write leaves the old header
pointing at complete old chunks.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from routing_service.domain.dispatch import (
    AgentSlot,
    AssignmentSettings,
    AssignReason,
    Cause,
    ConversationSlot,
    OrgDispatcher,
    Proposal,
    holders,
)
from routing_service.domain.progress import PresenceProgress
from routing_service.service_layer.dispatcher import PartitionState

Doc = dict[str, Any]
CHUNK_RECORDS = 2000
#: FerretDB keeps a connection per update of a bulk write: stay far below its pool of 100
BULK_CHUNK = 64
VIEW_WAITING_LIMIT = 500
#: Settings changes kept per org (the audit of who changed what, when); older ones expire.
HISTORY_KEPT = 100


def _ts(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s is not None else None


def _dt_required(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _key(k: tuple[datetime, str] | None) -> list[Any] | None:
    return [k[0].isoformat(), k[1]] if k is not None else None


def _unkey(v: list[Any] | None) -> tuple[datetime, str] | None:
    return (datetime.fromisoformat(v[0]), v[1]) if v is not None else None


def _mark(m: tuple[int, Cause] | None) -> list[Any] | None:
    return [m[0], m[1].event_id, m[1].event_type] if m is not None else None


def _unmark(v: list[Any] | None) -> tuple[int, Cause] | None:
    return (int(v[0]), Cause(v[1], v[2])) if v is not None else None


def id_values(mapping: Mapping[str, Any]) -> list[Doc]:
    """A map keyed by ids as stored: ``[{id, value}]`` ordered by id. Ids are data, never
    MongoDB field names, so any id the API accepts (``.``, a leading ``$``) can be stored."""
    return [{"id": k, "value": mapping[k]} for k in sorted(mapping)]


def from_id_values(stored: Any) -> dict[str, Any]:
    """The map back from ``id_values``; also reads the earlier shape, a document keyed by id."""
    if isinstance(stored, Mapping):
        return dict(stored)
    return {str(e["id"]): e["value"] for e in stored or ()}


def settings_doc(s: AssignmentSettings) -> Doc:
    return {
        "enabled": s.enabled,
        "default_capacity": s.default_capacity,
        "team_capacity": id_values(s.team_capacity),
        "channel_teams": id_values(s.channel_teams),
    }


def settings_from(d: Doc) -> AssignmentSettings:
    return AssignmentSettings(
        bool(d.get("enabled", False)),
        d.get("default_capacity"),
        from_id_values(d.get("team_capacity")),
        from_id_values(d.get("channel_teams")),
    )


def _proposal_doc(p: Proposal) -> Doc:
    return {
        "id": p.proposal_id,
        "agent": p.agent_id,
        "cause": p.waiting_cause,
        "channel": p.channel_id,
        "team": p.team,
        "since": _ts(p.waiting_since),
        "reason": p.reason.value,
        "ce": [p.cause.event_id, p.cause.event_type],
        "at": _ts(p.occurred_at),
        "cap": p.capacity,
    }


def _proposal_from(org: str, slot_id: str, partition: int, d: Doc) -> Proposal:
    since, at = _dt(d["since"]), _dt(d["at"])
    assert since is not None and at is not None
    return Proposal(
        d["id"],
        org,
        slot_id,
        partition,
        d["agent"],
        d["cause"],
        d["channel"],
        d["team"],
        since,
        AssignReason(d["reason"]),
        Cause(d["ce"][0], d["ce"][1]),
        at,
        d.get("cap"),
    )


def org_records(org: OrgDispatcher) -> list[list[Any]]:
    """One org's state as flat records (chunked across documents)."""
    out = [_org_record(org)]
    out += [_agent_record(org.org_id, a) for a in org.agents.values()]
    out += [_conversation_record(org.org_id, s) for s in org.conversations.values()]
    out += [["r", org.org_id, cid, v] for cid, v in org.retired.items()]
    return out


def _org_record(org: OrgDispatcher) -> list[Any]:
    return [
        "m",
        org.org_id,
        settings_doc(org.settings),
        _key(org.settings_key),
        org.seq,
        _ts(org.clock),
    ]


def _agent_record(org_id: str, a: AgentSlot) -> list[Any]:
    return [
        "a",
        org_id,
        a.agent_id,
        a.signed_in,
        _key(a.session_key),
        a.available,
        _key(a.availability_key),
        sorted(a.teams),
        a.last_auto,
        _mark(a.became_eligible),
    ]


def _conversation_record(org_id: str, s: ConversationSlot) -> list[Any]:
    return [
        "c",
        org_id,
        s.conversation_id,
        s.partition,
        s.version,
        s.queue,
        s.assignee_id,
        s.channel_id,
        _ts(s.waiting_since),
        s.waiting_cause,
        _mark(s.started_waiting),
        _proposal_doc(s.pending) if s.pending is not None else None,
        _ts(s.presence_until),
    ]


def _fingerprint(s: ConversationSlot) -> tuple[Any, ...]:
    """Everything ``_conversation_record`` encodes of a slot."""
    return (
        s.partition,
        s.version,
        s.queue,
        s.assignee_id,
        s.channel_id,
        s.waiting_since,
        s.waiting_cause,
        s.started_waiting,
        s.pending,
        s.presence_until,
    )


class EncodedRecords:
    """The JSON text of each conversation's record, reused while the conversation is unchanged.

    A large state is mostly conversations that did not change since the last snapshot
    (assigned and waiting for an answer from their agent): encoding all of them again held
    the event loop, and so every consumer of the process, for tens to hundreds of ms per
    snapshot. A text is a pure function of the org, the conversation and its fingerprint, so
    a reused one is exactly what encoding again would give."""

    def __init__(self) -> None:
        #: partition -> (kind, org, conversation) -> (fingerprint, JSON text)
        self._texts: dict[int, dict[tuple[str, str, str], tuple[Any, str]]] = {}

    def encode(self, partition: int, orgs: Iterable[OrgDispatcher]) -> list[str]:
        known = self._texts.get(partition, {})
        kept: dict[tuple[str, str, str], tuple[Any, str]] = {}
        out: list[str] = []
        for org in orgs:
            out.append(json.dumps(_org_record(org)))
            out += [json.dumps(_agent_record(org.org_id, a)) for a in org.agents.values()]
            for kind, cid, fingerprint in _keyed(org):
                key = (kind, org.org_id, cid)
                cached = known.get(key)
                if cached is None or cached[0] != fingerprint:
                    record = (
                        _conversation_record(org.org_id, org.conversations[cid])
                        if kind == "c"
                        else ["r", org.org_id, cid, fingerprint]
                    )
                    cached = (fingerprint, json.dumps(record))
                kept[key] = cached
                out.append(cached[1])
        self._texts[partition] = kept
        return out


def _keyed(org: OrgDispatcher) -> Iterator[tuple[str, str, Any]]:
    for cid, s in org.conversations.items():
        yield "c", cid, _fingerprint(s)
    for cid, version in org.retired.items():
        yield "r", cid, version


def orgs_from(records: Sequence[list[Any]]) -> dict[str, OrgDispatcher]:
    orgs: dict[str, OrgDispatcher] = {}

    def org(org_id: str) -> OrgDispatcher:
        if org_id not in orgs:
            orgs[org_id] = OrgDispatcher(org_id)
        return orgs[org_id]

    for r in records:
        kind, org_id = r[0], r[1]
        o = org(org_id)
        if kind == "m":
            o.settings = settings_from(r[2])
            o.settings_key = _unkey(r[3])
            o.seq = int(r[4])
            o.clock = _dt(r[5])
        elif kind == "a":
            o.agents[r[2]] = AgentSlot(
                r[2], r[3], _unkey(r[4]), r[5], _unkey(r[6]), frozenset(r[7]), r[8], _unmark(r[9])
            )
        elif kind == "c":
            o.conversations[r[2]] = ConversationSlot(
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                _dt(r[8]),
                r[9],
                _unmark(r[10]),
                _proposal_from(org_id, r[2], r[3], r[11]) if r[11] is not None else None,
                _dt(r[12]) if len(r) > 12 else None,  # absent from older snapshots
            )
        elif kind == "r":
            o.retired[r[2]] = int(r[3])
    for o in orgs.values():
        o.load = holders(o.conversations.values())
        o.rebuild_queues()
    return orgs


@dataclass(frozen=True)
class SerializedPartition:
    partition: int
    next_offset: int
    #: Each record as JSON text (a chunk document holds a JSON array of them).
    records: list[str]


class MongoDispatchStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._headers = db["dispatch_snapshots"]
        self._chunks = db["dispatch_snapshot_chunks"]
        self._views = db["assignment_views"]
        self._settings = db["assignment_settings"]
        self._encoded = EncodedRecords()

    # -- snapshots -----------------------------------------------------------------------------

    def serialize(self, state: PartitionState) -> SerializedPartition:
        progress = state.presence
        head = [
            "p",
            "",
            progress.partitions,
            [[p, _ts(t)] for p, t in sorted(progress.marks.items())],
        ]
        records = [json.dumps(head), *self._encoded.encode(state.partition, state.orgs.values())]
        return SerializedPartition(state.partition, state.next_offset, records)

    async def save_snapshot(self, snap: SerializedPartition) -> None:
        header_id = str(snap.partition)
        old = await self._headers.find_one({"_id": header_id})
        generation = f"{time.time_ns():x}-{uuid.uuid4().hex[:6]}"
        chunks = [
            snap.records[i : i + CHUNK_RECORDS] for i in range(0, len(snap.records), CHUNK_RECORDS)
        ]
        for i, chunk in enumerate(chunks):
            await self._chunks.insert_one(
                # one JSON string: FerretDB v1 stores no nested arrays
                {"_id": f"{snap.partition}|{generation}|{i}", "records": f"[{','.join(chunk)}]"}
            )
        await self._headers.replace_one(
            {"_id": header_id},
            {
                "_id": header_id,
                "generation": generation,
                "chunks": len(chunks),
                "next_offset": snap.next_offset,
                "written_at": time.time(),
            },
            upsert=True,
        )
        if old is not None:
            for i in range(int(old.get("chunks", 0))):
                await self._chunks.delete_one({"_id": f"{snap.partition}|{old['generation']}|{i}"})

    async def load_snapshot(self, partition: int) -> PartitionState | None:
        header = await self._headers.find_one({"_id": str(partition)})
        if header is None:
            return None
        docs = await asyncio.gather(
            *(
                self._chunks.find_one({"_id": f"{partition}|{header['generation']}|{i}"})
                for i in range(int(header["chunks"]))
            )
        )
        records = [r for d in docs if d is not None for r in json.loads(d["records"])]
        progress = PresenceProgress()
        for r in records:
            if r[0] == "p":  # the partition's presence progress (absent from older snapshots)
                progress.observe(int(r[2]), {int(p): _dt_required(t) for p, t in r[3]})
        orgs = orgs_from([r for r in records if r[0] != "p"])
        value = progress.value()
        if value is not None:
            for org in orgs.values():
                org.presence = value
                org.rebuild_queues()
        return PartitionState(partition, int(header["next_offset"]), orgs, presence=progress)

    # -- read views -----------------------------------------------------------------------------

    def assignment_view(self, org: OrgDispatcher) -> Doc:
        waiting = []
        oldest, total = org.waiting_and_total(VIEW_WAITING_LIMIT)
        for slot, why in oldest:
            waiting.append(
                {
                    "conversation_id": slot.conversation_id,
                    "waiting_since": _ts(slot.waiting_since),
                    "team": why.team,
                    "channel_id": slot.channel_id,
                    "reason": why.describe(),
                    "at_capacity": why.at_capacity,
                    "away": why.away,
                    "signed_out": why.signed_out,
                }
            )
        agents = []
        for a in sorted(org.agents.values(), key=lambda a: a.agent_id):
            agents.append(
                {
                    "agent_id": a.agent_id,
                    "signed_in": a.signed_in,
                    "available": a.available,
                    "teams": sorted(a.teams),
                    "held": org.held(a.agent_id),
                    "capacity": org.settings.default_capacity,
                    "team_capacities": id_values(
                        {t: c for t, c in org.settings.team_capacity.items() if t in a.teams}
                    ),
                }
            )
        return {
            "_id": org.org_id,
            "waiting": waiting,
            "waiting_total": total,
            "agents": agents,
            "as_of": _ts(org.clock),
        }

    async def write_assignment_views(self, views: Sequence[Doc]) -> None:
        ops = [ReplaceOne({"_id": v["_id"]}, v, upsert=True) for v in views]
        for i in range(0, len(ops), BULK_CHUNK):
            await self._views.bulk_write(ops[i : i + BULK_CHUNK], ordered=False)

    async def get_assignment_view(self, org_id: str) -> Doc | None:
        """The org's view, its maps as dicts (as the RPCs read them)."""
        view = await self._views.find_one({"_id": org_id})
        for agent in (view or {}).get("agents", []):
            agent["team_capacities"] = from_id_values(agent.get("team_capacities"))
        return view

    # -- settings -------------------------------------------------------------------------------

    async def get_settings(self, org_id: str) -> Doc | None:
        """The stored settings document, the maps of ``current`` as dicts."""
        return _readable(await self._settings.find_one({"_id": org_id}))

    async def append_settings(
        self, org_id: str, settings: AssignmentSettings, *, by: str, at: datetime
    ) -> Doc:
        """Store the new current value and append it to the history (the audit)."""
        current = {**settings_doc(settings), "updated_at": _ts(at), "updated_by": by}
        doc = await self._settings.find_one({"_id": org_id}) or {"_id": org_id, "history": []}
        doc["current"] = current
        doc["history"] = [*doc.get("history", []), current][-HISTORY_KEPT:]
        await self._settings.replace_one({"_id": org_id}, doc, upsert=True)
        return _readable(doc) or doc


def _readable(doc: Doc | None) -> Doc | None:
    current = (doc or {}).get("current")
    if doc is None or not current:
        return doc
    maps = {k: from_id_values(current.get(k)) for k in ("team_capacity", "channel_teams")}
    return {**doc, "current": {**current, **maps}}
