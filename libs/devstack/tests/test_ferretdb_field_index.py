"""The devstack's FerretDB (SQLite backend) answers filters on a top-level string field from
that field's index, with MongoDB's results.

Unpatched FerretDB v1.24.2 pushes nothing but ``_id`` down to SQLite: ``{agent_key: "x"}``
read and decoded every document of the collection, index or not. ``inbox_devstack.ferret.PATCHES``
adds a WHERE clause for string equalities and ``$in`` lists of strings that keeps every
document the filter can match (array values included); the handler still applies the whole
filter. These tests check the results against MongoDB's semantics case by case, the plan, and
that a lookup does not grow with the collection. They skip when the database is not FerretDB
with the SQLite backend.
"""

from __future__ import annotations

import statistics
import struct
import time
from typing import Any

import pytest
from bson.raw_bson import RawBSONDocument
from inbox_testing.infra import Infra
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = [pytest.mark.infra, pytest.mark.timeout(300)]

Db = AsyncDatabase[dict[str, Any]]
Coll = AsyncCollection[dict[str, Any]]

# every kind of value a string filter must (or must not) match, by _id: (f, g)
DOCS: dict[str, tuple[Any, int]] = {
    "str-x": ("x", 0),
    "str-y": ("y", 1),
    "arr-x": (["z", "x"], 1),
    "arr-only-x": (["x"], 0),
    "arr-y": (["y"], 0),
    "arr-empty": ([], 0),
    "arr-doc-x": ([{"k": "x"}], 0),
    "doc-x": ({"k": "x"}, 0),
    "num": (5, 0),
    "null": (None, 0),
    "sep": ("org\x1fagent", 0),
    "html": ("<a&b>", 0),
    "unicode": ("é\u2028😀", 0),
    "quote": ('say "x" \\ done', 0),
}


async def _plan(db: Db, coll: str, filter_: dict[str, Any]) -> list[str]:
    """FerretDB's ``explain`` of a find: SQLite's EXPLAIN QUERY PLAN lines ("... detail=...")."""
    info = await db.client.admin.command("buildInfo")
    if "ferretdbFeatures" not in info:
        pytest.skip("the test database is not FerretDB")
    reply = await db.command("explain", {"find": coll, "filter": filter_})
    plan = reply.get("queryPlanner", {}).get("Plan")
    if not isinstance(plan, list) or not all("detail=" in str(line) for line in plan):
        pytest.skip(f"not FerretDB with the SQLite backend (explain: {reply.get('queryPlanner')})")
    return [str(line) for line in plan]


async def _ids(coll: Coll, filter_: dict[str, Any] | RawBSONDocument) -> set[str]:
    return {d["_id"] async for d in coll.find(filter_, {"_id": 1})}


def _repeated_key_filter(key: str, values: list[str]) -> RawBSONDocument:
    """``{key: values[0], key: values[1], ...}``: BSON allows it, a dict cannot hold it."""
    body = b"".join(
        b"\x02"
        + key.encode()
        + b"\x00"
        + struct.pack("<i", len(v.encode()) + 1)
        + v.encode()
        + b"\x00"
        for v in values
    )
    return RawBSONDocument(struct.pack("<i", len(body) + 5) + body + b"\x00")


async def _fill(coll: Coll) -> None:
    docs = [{"_id": i, "f": f, "g": g} for i, (f, g) in DOCS.items()]
    await coll.insert_many([*docs, {"_id": "missing", "g": 0}])


async def test_string_filters_match_as_in_mongodb(infra: Infra, mongo_db: Db) -> None:
    for name, indexed in (("plain", False), ("indexed", True)):
        coll = mongo_db[name]
        if indexed:
            await coll.create_index("f")
        await _fill(coll)
        await _plan(mongo_db, name, {})  # skips unless FerretDB on SQLite
        expected = {
            "x": {"str-x", "arr-x", "arr-only-x"},
            "y": {"str-y", "arr-y"},
            "z": {"arr-x"},
            "nothing": set(),
            "org\x1fagent": {"sep"},
            "<a&b>": {"html"},
            "é\u2028😀": {"unicode"},
            'say "x" \\ done': {"quote"},
        }
        for value, ids in expected.items():
            assert await _ids(coll, {"f": value}) == ids, (name, value)
            assert await _ids(coll, {"f": {"$in": [value]}}) == ids, (name, value)
        x_or_y = {"str-x", "arr-x", "arr-only-x", "str-y", "arr-y"}
        assert await _ids(coll, {"f": {"$in": ["x", "y", "nothing"]}}) == x_or_y
        # with other conditions: only the string field is pushed down, the rest still applies
        assert await _ids(coll, {"f": "x", "g": 0}) == {"str-x", "arr-only-x"}
        assert await _ids(coll, {"f": {"$in": ["x", "y"]}, "g": 1}) == {"str-y", "arr-x"}
        assert await _ids(coll, {"f": "x", "_id": "arr-x"}) == {"arr-x"}
        # not pushed down (other operators, other types): unchanged semantics
        assert await _ids(coll, {"f": None}) == {"null", "missing"}
        assert await _ids(coll, {"f": 5}) == {"num"}
        assert await _ids(coll, {"f": ["x"]}) == {"arr-only-x"}
        assert await _ids(coll, {"f": {"$in": ["x", 5]}}) == {"str-x", "arr-x", "arr-only-x", "num"}
        not_x = set(DOCS) - {"str-x", "arr-x", "arr-only-x"} | {"missing"}
        assert await _ids(coll, {"f": {"$ne": "x"}}) == not_x
        # a filter with a repeated key (raw BSON): not pushed down (FerretDB's Get would
        # panic on it), answered by the handler as before
        assert await _ids(coll, _repeated_key_filter("f", ["x", "y"])) == set()
        # count, update and delete go through the same query
        assert await coll.count_documents({"f": "x"}) == 3
        res = await coll.update_many({"f": {"$in": ["y"]}}, {"$set": {"hit": True}})
        assert (res.matched_count, res.modified_count) == (2, 2)
        assert await _ids(coll, {"hit": True}) == {"str-y", "arr-y"}
        assert (await coll.delete_many({"f": "x"})).deleted_count == 3
        assert await _ids(coll, {"f": "x"}) == set()
        assert await coll.count_documents({}) == len(DOCS) + 1 - 3


async def test_the_plan_uses_the_field_index(infra: Infra, mongo_db: Db) -> None:
    coll = mongo_db["planned"]
    await coll.create_index("agent_key")
    await coll.create_index([("agent_key", 1), ("at", 1)], name="by_agent_at")
    await coll.insert_many([{"_id": f"d{n}", "agent_key": f"a{n % 7}", "at": n} for n in range(50)])
    for filter_ in (
        {"agent_key": "a1"},
        {"agent_key": {"$in": ["a1", "a2"]}},
        {"agent_key": "a1", "at": {"$gte": 10}},
    ):
        plan = await _plan(mongo_db, "planned", filter_)
        assert any("INDEX" in line for line in plan), (filter_, plan)
        assert not any("SCAN" in line and "INDEX" not in line for line in plan), (filter_, plan)
    # a field without an index: still answered (a scan in SQLite), same results
    assert len(await _ids(coll, {"at": {"$in": []}})) == 0
    assert await _ids(coll, {"agent_key": "a1", "at": {"$lt": 10}}) == {"d1", "d8"}


async def test_lookup_time_does_not_grow_with_collection_size(infra: Infra, mongo_db: Db) -> None:
    """Unpatched, finding one agent's 3 documents among 20,000 decoded all 20,000 (tens of
    ms) against one document in a 3-document collection; indexed, the ratio is ~1. Samples are
    interleaved and medians compared; the threshold (5x + 1 ms) leaves a wide margin."""
    big, small = mongo_db["big"], mongo_db["small"]
    for coll in (big, small):
        await coll.create_index("agent_key")
    for start in range(0, 20_000, 2000):
        await big.insert_many(
            [
                {"_id": f"b{n}", "agent_key": f"agent-{n % 6667}", "pad": "x" * 64}
                for n in range(start, start + 2000)
            ]
        )
    await small.insert_many([{"_id": f"s{n}", "agent_key": "agent-1"} for n in range(3)])
    await _plan(mongo_db, "big", {})  # skips unless FerretDB on SQLite

    async def timed(coll: Coll) -> float:
        started = time.perf_counter()
        assert len(await _ids(coll, {"agent_key": "agent-1"})) == 3
        return time.perf_counter() - started

    big_t: list[float] = []
    small_t: list[float] = []
    for _ in range(3):  # warm-up
        await timed(big)
        await timed(small)
    for _ in range(40):
        big_t.append(await timed(big))
        small_t.append(await timed(small))
    big_ms = statistics.median(big_t) * 1000
    small_ms = statistics.median(small_t) * 1000
    assert big_ms < 5 * small_ms + 1.0, (
        f"median {big_ms:.2f} ms in 20k documents vs {small_ms:.2f} ms in 3: "
        "the field's index is not used"
    )
