"""The devstack's FerretDB (SQLite backend) answers ``_id`` lookups from the unique ``_id`` index.

Unpatched FerretDB v1.24.2 filters on ``_ferretdb_sjson->'$._id'`` while the index is on
``_ferretdb_sjson->"_id"``, so SQLite scans the whole table for every find/update/delete by
``_id``. ``inbox_devstack.ferret.PATCHES`` fixes that at build time; these tests fail on an
unpatched build. They run against the shared test infrastructure (the ``infra`` fixture) and skip
when it is not FerretDB with the SQLite backend (e.g. a real MongoDB via ``MONGODB_URI``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from bson import ObjectId
from inbox_testing.infra import Infra
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

pytestmark = [pytest.mark.infra, pytest.mark.timeout(300)]

Db = AsyncDatabase[dict[str, Any]]


async def _sqlite_plan(db: Db, coll: str, filter_: dict[str, Any]) -> list[str]:
    """FerretDB's ``explain`` of a find: SQLite's EXPLAIN QUERY PLAN lines ("... detail=...")."""
    reply = await db.command("explain", {"find": coll, "filter": filter_})
    plan = reply.get("queryPlanner", {}).get("Plan")
    if not isinstance(plan, list) or not all("detail=" in str(line) for line in plan):
        pytest.skip(f"not FerretDB with the SQLite backend (explain: {reply.get('queryPlanner')})")
    return [str(line) for line in plan]


async def _require_ferretdb(db: Db) -> None:
    info = await db.client.admin.command("buildInfo")
    if "ferretdbFeatures" not in info:
        pytest.skip("the test database is not FerretDB")


async def _fill(coll: AsyncCollection[dict[str, Any]], ids: list[Any]) -> None:
    for start in range(0, len(ids), 2000):
        await coll.insert_many(
            [
                {"_id": i, "n": start + k, "pad": "x" * 32}
                for k, i in enumerate(ids[start : start + 2000])
            ]
        )


async def test_id_lookups_use_the_id_index(infra: Infra, mongo_db: Db) -> None:
    await _require_ferretdb(mongo_db)
    str_ids = [f"doc-{n:05d}" for n in range(500)]
    oid_ids = [ObjectId() for _ in range(500)]
    await _fill(mongo_db["by_str"], str_ids)
    await _fill(mongo_db["by_oid"], oid_ids)

    for coll, last in (("by_str", str_ids[-1]), ("by_oid", oid_ids[-1])):
        plan = await _sqlite_plan(mongo_db, coll, {"_id": last})
        assert any(
            "SEARCH" in line and "USING INDEX" in line and "__id_" in line for line in plan
        ), f"_id lookup in {coll} does not use the _id index: {plan}"
        assert not any("detail=SCAN" in line for line in plan), plan

    # Behaviour is unchanged: lookups, update/replace/delete by _id, duplicate keys, other filters.
    coll_s = mongo_db["by_str"]
    assert (await coll_s.find_one({"_id": str_ids[-1]}) or {}).get("n") == 499
    assert await coll_s.find_one({"_id": "missing"}) is None
    assert await coll_s.find_one({"_id": 499}) is None  # a number is not the string "…499"
    res = await coll_s.update_one({"_id": str_ids[10]}, {"$set": {"touched": True}})
    assert (res.matched_count, res.modified_count) == (1, 1)
    assert (await coll_s.find_one({"_id": str_ids[10]}) or {}).get("touched") is True
    res_r = await coll_s.replace_one({"_id": str_ids[11]}, {"replaced": 1})
    assert res_r.modified_count == 1
    assert await coll_s.find_one({"_id": str_ids[11]}) == {"_id": str_ids[11], "replaced": 1}
    res_d = await coll_s.delete_one({"_id": str_ids[12]})
    assert res_d.deleted_count == 1
    assert await coll_s.find_one({"_id": str_ids[12]}) is None
    with pytest.raises(DuplicateKeyError):
        await coll_s.insert_one({"_id": str_ids[13]})
    assert await coll_s.count_documents({"_id": str_ids[13]}) == 1
    assert len(await coll_s.find({"_id": {"$in": str_ids[20:30]}}).to_list()) == 10
    assert (await coll_s.find_one({"n": 42}) or {}).get("_id") == str_ids[42]
    assert await coll_s.count_documents({}) == 499

    coll_o = mongo_db["by_oid"]
    assert (await coll_o.find_one({"_id": oid_ids[-1]}) or {}).get("n") == 499
    assert (await coll_o.delete_one({"_id": oid_ids[0]})).deleted_count == 1
    with pytest.raises(DuplicateKeyError):
        await coll_o.insert_one({"_id": oid_ids[1]})


async def test_id_in_lookups_use_the_id_index(infra: Infra, mongo_db: Db) -> None:
    """``{_id: {$in: [...]}}`` of strings or ObjectIDs (batched reads by key) searches the
    index once per key; any other ``$in`` still gets the right documents (full scan)."""
    await _require_ferretdb(mongo_db)
    str_ids = [f"doc-{n:05d}" for n in range(600)]
    oid_ids = [ObjectId() for _ in range(50)]
    await _fill(mongo_db["in_str"], str_ids)
    await _fill(mongo_db["in_oid"], oid_ids)
    coll_s, coll_o = mongo_db["in_str"], mongo_db["in_oid"]

    for coll, keys in (("in_str", str_ids[100:164]), ("in_oid", oid_ids[:10])):
        plan = await _sqlite_plan(mongo_db, coll, {"_id": {"$in": keys}})
        assert any("USING INDEX" in line and "__id_" in line for line in plan), plan
        assert not any("detail=SCAN" in line for line in plan), plan

    async def ids(coll: AsyncCollection[dict[str, Any]], filter_: dict[str, Any]) -> set[Any]:
        return {d["_id"] async for d in coll.find(filter_)}

    wanted = [str_ids[5], str_ids[599], "missing", str_ids[5]]
    assert await ids(coll_s, {"_id": {"$in": wanted}}) == {str_ids[5], str_ids[599]}
    assert await ids(coll_o, {"_id": {"$in": oid_ids[3:6]}}) == set(oid_ids[3:6])
    # not pushed down, still answered: numbers, mixed types, nothing, more than 500 keys
    assert await ids(coll_s, {"_id": {"$in": [5, str_ids[7]]}}) == {str_ids[7]}
    assert await ids(coll_s, {"_id": {"$in": []}}) == set()
    assert await ids(coll_s, {"_id": {"$in": str_ids}}) == set(str_ids)
    assert any(
        "SCAN" in line for line in await _sqlite_plan(mongo_db, "in_str", {"_id": {"$in": [5]}})
    )
    # updates and deletes by _id $in go through the same query
    res = await coll_s.update_many({"_id": {"$in": str_ids[:3]}}, {"$set": {"hit": True}})
    assert (res.matched_count, res.modified_count) == (3, 3)
    assert await ids(coll_s, {"hit": True}) == set(str_ids[:3])
    assert (await coll_s.delete_many({"_id": {"$in": str_ids[:3]}})).deleted_count == 3
    assert await coll_s.count_documents({}) == 597


async def test_id_lookup_time_does_not_grow_with_collection_size(
    infra: Infra, mongo_db: Db
) -> None:
    """Behavioural check beside ``explain``: the plan is what the real queries do.

    Unpatched, a lookup in 20k documents took ~25 ms against < 1 ms in a 1-document
    collection (ratio ~30, 2-core machine); indexed, the ratio is ~1. Samples are interleaved
    and medians compared, so machine load hits both sides alike; the threshold (5x + 1 ms)
    leaves a wide margin both ways.
    """
    await _require_ferretdb(mongo_db)
    big_ids = [f"big-{n:05d}" for n in range(20_000)]
    await _fill(mongo_db["big"], big_ids)
    await _fill(mongo_db["small"], ["only"])
    big, small = mongo_db["big"], mongo_db["small"]
    last = big_ids[-1]

    async def timed_find(coll: AsyncCollection[dict[str, Any]], _id: str) -> float:
        started = time.perf_counter()
        assert await coll.find_one({"_id": _id}) is not None
        return time.perf_counter() - started

    async def timed_update(coll: AsyncCollection[dict[str, Any]], _id: str) -> float:
        started = time.perf_counter()
        res = await coll.update_one({"_id": _id}, {"$inc": {"n": 1}})
        assert res.modified_count == 1
        return time.perf_counter() - started

    for timed in (timed_find, timed_update):
        big_t: list[float] = []
        small_t: list[float] = []
        for _ in range(3):  # warm-up
            await timed(big, last)
            await timed(small, "only")
        for _ in range(40):
            big_t.append(await timed(big, last))
            small_t.append(await timed(small, "only"))
        big_ms = statistics.median(big_t) * 1000
        small_ms = statistics.median(small_t) * 1000
        assert big_ms < 5 * small_ms + 1.0, (
            f"{timed.__name__} by _id: median {big_ms:.2f} ms in 20k documents vs "
            f"{small_ms:.2f} ms in 1 document: the _id index is not used"
        )
