"""``find_by_ids`` on the real FerretDB: every stored id found once, in ``$in`` chunks."""

from __future__ import annotations

from typing import Any

import pytest
from inbox_kit.mongo import IDS_PER_QUERY, find_by_ids
from inbox_testing import Infra
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = pytest.mark.infra


class _Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.filters: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.filters.append(event.command["filter"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_ids_are_read_in_chunks_of_one_in_query(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    stored = [f"doc-{i:04d}" for i in range(300)]
    await mongo_db["docs"].insert_many([{"_id": i, "n": n} for n, i in enumerate(stored)])
    finds = _Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_uri, tz_aware=True, event_listeners=[finds]
    )
    try:
        docs = client[mongo_db.name]["docs"]
        wanted = [*stored, "missing", stored[0]]  # 301 distinct ids: two chunks
        found = await find_by_ids(docs, wanted, {"n": 1})
        assert sorted(d["_id"] for d in found) == stored
        assert all(d == {"_id": d["_id"], "n": stored.index(d["_id"])} for d in found)
        assert [len(f["_id"]["$in"]) for f in finds.filters] == [IDS_PER_QUERY, 301 - IDS_PER_QUERY]

        finds.filters.clear()
        assert [d["_id"] for d in await find_by_ids(docs, [stored[7]])] == [stored[7]]
        assert await find_by_ids(docs, []) == []
        assert finds.filters == [{"_id": stored[7]}]  # one id: an exact _id, none: no query
    finally:
        await client.close()
