"""The store's group-committed writes on the real FerretDB: every caller's write lands, and a
duplicate session id fails only its own caller."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from inbox_testing import Infra
from presence_service.adapters.mongo import MongoPresenceStore
from presence_service.domain.model import AgentRef, Session
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

pytestmark = pytest.mark.infra


def _session(sid: str, now: datetime) -> Session:
    return Session(sid, AgentRef("org", f"agent-{sid}"), now, now, now + timedelta(seconds=45))


async def test_concurrent_inserts_and_heartbeats_are_all_stored(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    store = MongoPresenceStore(mongo_db)
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [f"s{i}" for i in range(20)]
    await store.insert_session(_session("s0", now))
    results = await asyncio.gather(
        *(store.insert_session(_session(sid, now)) for sid in ids), return_exceptions=True
    )
    assert isinstance(results[0], DuplicateKeyError)  # s0 existed: only that caller fails
    assert results[1:] == [True] * 19

    later = now + timedelta(seconds=5)
    await asyncio.gather(
        *(store.touch_session(sid, later, later + timedelta(seconds=45)) for sid in ids),
        store.touch_session("s1", now + timedelta(seconds=1), now),  # older beat, same batch
    )
    stored = await asyncio.gather(*(store.get_session(sid) for sid in ids))
    assert all(s is not None and s.last_heartbeat == later for s in stored)
    assert all(s is not None and s.expires_at == later + timedelta(seconds=45) for s in stored)


async def test_periodic_relay_scan_reads_pending_markers(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    from presence_service.domain.model import Transition
    from presence_service.service_layer.handlers import transition_record

    store = MongoPresenceStore(mongo_db)
    now = datetime.now(UTC).replace(microsecond=0)
    t = Transition(AgentRef("org", "agent"), 1, True, now, "s1")
    record = transition_record(t, now)
    assert await store.claim_transition(t, record)
    assert not await store.claim_transition(t, record)  # the loser's marker is harmless
    later = now + timedelta(seconds=5)
    [pending] = await store.unpublished(later, 10)
    assert pending.key == record.key and pending.event_id == record.event_id
    assert await store.unpublished(now, 10) == []  # too young for the scan
    await store.mark_published(record.key, later)
    assert await mongo_db["outbox_pending"].count_documents({}) == 0
    assert await store.unpublished(later, 10) == []
    assert await store.unpublished(later, 10, full_scan=True) == []
    # a marker left behind (its delete was lost) is cleaned by the next scan
    await mongo_db["outbox_pending"].insert_one({"_id": record.key, "created_at": now})
    assert await store.unpublished(later, 10) == []
    assert await mongo_db["outbox_pending"].count_documents({}) == 0


async def test_sign_ins_store_their_sessions_and_claims_in_one_group_commit(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Concurrent sign-ins of signed-out agents: every session is stored, and each claim wins
    unless the log already has that transition (then only that caller's claim loses)."""
    from presence_service.domain.model import Transition
    from presence_service.service_layer.handlers import transition_record

    store = MongoPresenceStore(mongo_db)
    now = datetime.now(UTC).replace(microsecond=0)
    sessions = [_session(f"c{i}", now) for i in range(10)]
    taken = Transition(sessions[3].agent, 1, True, now, "elsewhere")
    assert await store.claim_transition(taken, transition_record(taken, now))

    claims = [Transition(s.agent, 1, True, now, s.session_id) for s in sessions]
    won = await asyncio.gather(
        *(
            store.insert_session(s, claim=(t, transition_record(t, now)))
            for s, t in zip(sessions, claims, strict=True)
        )
    )

    assert won == [i != 3 for i in range(10)]
    assert all(await asyncio.gather(*(store.get_session(s.session_id) for s in sessions)))
    heads = await asyncio.gather(*(store.head_after(s.agent, None) for s in sessions))
    assert [h.session_id if h else None for h in heads] == [
        "elsewhere" if i == 3 else f"c{i}" for i in range(10)
    ]


class _Finds(monitoring.CommandListener):
    """The ``find`` commands sent, per collection."""

    def __init__(self) -> None:
        self.by_collection: dict[str, int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            name = str(event.command["find"])
            self.by_collection[name] = self.by_collection.get(name, 0) + 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_concurrent_probes_and_hint_reads_are_one_query_per_round(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """32 concurrent ``head`` reads (hint, then probes of ``n+1``...): one ``$in`` on
    ``heads`` and one on ``outbox`` per probe round, not one read per agent and round."""
    from presence_service.domain.model import Transition
    from presence_service.service_layer.handlers import transition_record

    now = datetime.now(UTC).replace(microsecond=0)
    writer = MongoPresenceStore(mongo_db)
    agents = [AgentRef("org", f"agent-{i:02d}") for i in range(32)]
    for i, agent in enumerate(agents):  # agent i has i % 3 transitions, none with a hint
        for seq in range(1, i % 3 + 1):
            t = Transition(agent, seq, seq % 2 == 1, now, f"s{i}")
            await writer._insert_claims([writer._claim_docs(t, transition_record(t, now))])

    finds = _Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_uri, tz_aware=True, event_listeners=[finds]
    )
    try:
        store = MongoPresenceStore(client[mongo_db.name])
        heads = await asyncio.gather(*(store.head_after(a, None) for a in agents))
        assert [h.seq if h else 0 for h in heads] == [i % 3 for i in range(32)]
        # rounds: n+1 of all 32, n+2 of the 21 with one, n+3 of the 10 with two
        assert finds.by_collection == {"outbox": 3}

        finds.by_collection.clear()
        hints = await asyncio.gather(*(store.head_hint(a) for a in agents))
        assert hints == [None] * 32
        assert finds.by_collection == {"heads": 1}
    finally:
        await client.close()


async def test_heartbeat_write_back_names_the_sessions_no_longer_stored(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    store = MongoPresenceStore(mongo_db)
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [f"w{i}" for i in range(70)]  # two bulk chunks
    await asyncio.gather(*(store.insert_session(_session(sid, now)) for sid in ids))
    gone = {"w3", "w64", "w69"}
    await mongo_db["sessions"].delete_many({"_id": {"$in": sorted(gone)}})
    later = now + timedelta(seconds=5)
    progress = [(sid, later, later + timedelta(seconds=45)) for sid in ids]
    assert await store.persist_heartbeats(progress) == gone
    stored = await store.get_session("w4")
    assert stored is not None and stored.last_heartbeat == later


async def test_sessions_round_trip_whatever_their_ids_and_on_ferretdb_have_no_extra_index(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """A session document keeps only what cannot be derived (the agent is its ``agent_key``),
    so ids containing the key separator must still read back exactly; on FerretDB, which
    never uses secondary indexes for queries, none is created (each costs write work)."""
    store = MongoPresenceStore(mongo_db)
    await store.ensure_indexes()
    now = datetime.now(UTC).replace(microsecond=0)
    sessions = [
        Session("plain", AgentRef("org", "ana"), now, now, now + timedelta(seconds=45)),
        Session(
            "full",
            AgentRef("org", "b\x1fo\x1fb"),
            now,
            now,
            now + timedelta(seconds=45),
            client_description="web",
            replica="r1",
            teams=("a", "b"),
        ),
        Session("odd-org", AgentRef("o\x1frg", "eve"), now, now, now + timedelta(seconds=45)),
    ]
    await asyncio.gather(*(store.insert_session(s) for s in sessions))
    assert [await store.get_session(s.session_id) for s in sessions] == sessions
    assert sorted(s.session_id for s in await store.sessions_of([sessions[1].agent])) == ["full"]
    stored = await mongo_db["sessions"].find_one({"_id": "plain"})
    assert stored is not None and "org_id" not in stored and "teams" not in stored
    if infra.kind == "devstack":  # FerretDB
        names = [i["name"] async for i in await mongo_db["sessions"].list_indexes()]
        assert names == ["_id_"], names


class _Commands(monitoring.CommandListener):
    """The commands sent, as (name, collection)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "find"):
            self.sent.append((event.command_name, str(event.command[event.command_name])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_sign_ins_of_signed_in_agents_read_their_next_transitions_with_the_batch(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """32 concurrent sign-ins of agents known signed in: their sessions are one group commit
    and the probes of their ``n+1`` one ``$in`` sent after it; an agent whose log moved on
    meanwhile (signed out, or out and in again elsewhere) gets its real head."""
    from presence_service.domain.model import Transition
    from presence_service.service_layer.handlers import transition_record

    now = datetime.now(UTC).replace(microsecond=0)
    writer = MongoPresenceStore(mongo_db)
    agents = [AgentRef("org", f"agent-{i:02d}") for i in range(32)]
    known = [Transition(a, 1, True, now, f"first-{i}") for i, a in enumerate(agents)]
    moved = [  # agent 5 signed out elsewhere, agent 9 out and in again
        Transition(agents[5], 2, False, now, "first-5"),
        Transition(agents[9], 2, False, now, "first-9"),
        Transition(agents[9], 3, True, now, "other-9"),
    ]
    for t in known + moved:
        await writer._insert_claims([writer._claim_docs(t, transition_record(t, now))])

    commands = _Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_uri, tz_aware=True, event_listeners=[commands]
    )
    try:
        store = MongoPresenceStore(client[mongo_db.name])
        sessions = [_session(f"n{i}", now) for i in range(32)]
        sessions = [
            Session(s.session_id, a, now, now, s.expires_at)
            for s, a in zip(sessions, agents, strict=True)
        ]
        heads = await asyncio.gather(
            *(store.insert_session_then_head(s, k) for s, k in zip(sessions, known, strict=True))
        )
        assert [h.seq for h in heads] == [2 if i == 5 else 3 if i == 9 else 1 for i in range(32)]
        assert all(await asyncio.gather(*(store.get_session(s.session_id) for s in sessions)))
        # one insert, its batch's find of every n+1, then the batched probes of the two
        # agents whose log moved on (n+2 of both, n+3 of agent 9), then the session reads
        assert commands.sent[:4] == [
            ("insert", "sessions"),
            ("find", "outbox"),
            ("find", "outbox"),
            ("find", "outbox"),
        ], commands.sent
        assert commands.sent.count(("insert", "sessions")) == 1, commands.sent
    finally:
        await client.close()
