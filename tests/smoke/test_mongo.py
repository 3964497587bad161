"""Smoke tests on the real MongoDB-wire database (FerretDB here, MongoDB in production)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from inbox_kit import mongo as kit_mongo
from inbox_kit.mongo import upsert
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

pytestmark = pytest.mark.infra


async def test_unique_index_refuses_a_duplicate_insert(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    processed = mongo_db["processed_events"]
    await processed.create_index("event_id", unique=True)
    await processed.insert_one({"event_id": "e-1"})
    with pytest.raises(DuplicateKeyError):
        await processed.insert_one({"event_id": "e-1"})
    assert await processed.count_documents({}) == 1


async def test_duplicate_id_is_refused_and_ordered_false_inserts_the_rest(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    claims = mongo_db["claims"]
    await claims.insert_one({"_id": "a"})
    with pytest.raises(Exception) as bulk:
        await claims.insert_many([{"_id": "a"}, {"_id": "b"}], ordered=False)
    assert "E11000" in str(bulk.value) or "duplicate" in str(bulk.value).lower()
    assert sorted([d["_id"] async for d in claims.find({})]) == ["a", "b"]


async def test_racing_upserts_of_a_new_document_all_succeed_with_the_kit_helper(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Without the helper the losers of a first-upsert race fail with DuplicateKeyError.

    (Which fields survive is another matter: FerretDB updates are not atomic, so concurrent
    writers of one document may overwrite each other; our services avoid that by design.)
    """
    state = mongo_db["state"]
    for i in range(20):
        doc_id = f"doc-{i}"
        results = await asyncio.gather(
            *(
                upsert(
                    lambda n=n, d=doc_id: state.update_one(
                        {"_id": d}, {"$set": {"at": n}}, upsert=True
                    )
                )
                for n in range(4)
            )
        )
        assert all(r.acknowledged for r in results)
        doc = await state.find_one({"_id": doc_id})
        assert doc is not None and doc["at"] in range(4)
    assert await state.count_documents({}) == 20


async def test_a_500_update_bulk_write_completes_and_the_database_stays_usable(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Regression for FerretDB v1's connection leak (ENGINEERING.md §6): unpatched, a bulk write
    of >= 100 updates to existing documents hung the database for good. The devstack build
    patches it (libs/devstack ``ferret.PATCHES``); our code caps bulk writes anyway."""
    docs = mongo_db["bulk_regression"]
    await docs.insert_many([{"_id": f"d{i}", "n": 0} for i in range(500)])
    result = await asyncio.wait_for(
        docs.bulk_write(
            [UpdateOne({"_id": f"d{i}"}, {"$set": {"n": i + 1}}) for i in range(500)], ordered=False
        ),
        timeout=60,
    )
    assert result.modified_count == 500
    assert await asyncio.wait_for(docs.find_one({"_id": "d499"}), 10) == {"_id": "d499", "n": 500}


async def test_the_kit_bulk_write_caps_commands_and_reports_errors_like_one_call(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    docs = mongo_db["capped"]
    await docs.insert_many([{"_id": "d70"}, {"_id": "d1400"}])
    with pytest.raises(BulkWriteError) as failed:
        await kit_mongo.insert_many(docs, [{"_id": f"d{i}"} for i in range(1500)])
    # the duplicates sit in the 1st and 2nd insert command: indexes still point into the input
    assert sorted(e["index"] for e in failed.value.details["writeErrors"]) == [70, 1400]
    assert failed.value.details["nInserted"] == 1498
    totals = await kit_mongo.bulk_write(
        docs, [UpdateOne({"_id": f"d{i}"}, {"$set": {"n": i}}) for i in range(200)]
    )
    assert (totals["nMatched"], totals["nModified"]) == (200, 200)
    assert kit_mongo.MAX_BULK_OPERATIONS <= 64  # 200 updates went as 4 commands
