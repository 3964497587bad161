"""Smoke tests on the real MongoDB-wire database (FerretDB here, MongoDB in production)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

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
