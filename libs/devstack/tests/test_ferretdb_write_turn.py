"""The devstack's FerretDB queues concurrent writes to one database instead of letting them
back off in SQLite's busy handler (``inbox_devstack.ferret.PATCHES``, the write turn).

Unpatched, FerretDB gives each command its own SQLite connection; concurrent writers find the
database locked and sleep 1, 2, 5 ... 100 ms between attempts, so the same inserts sent
concurrently took ~1.8x as long as sent one after another (measured on a 2-core machine,
2026-12-02: 403 and 572 ms against 228 and 307 ms). With the write turn, concurrency overlaps
the round trips and costs no sleeps (0.55-0.9x). The runs are interleaved and the median
ratio is compared against 1.3, a wide margin both ways (the ``mongo_db`` fixture's client:
up to 100 connections, so up to 100 writers at once). Skips on anything but FerretDB.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pytest
from inbox_testing.infra import Infra
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = [pytest.mark.infra, pytest.mark.timeout(300)]

WRITES = 320


async def test_concurrent_writes_cost_no_more_than_sequential_ones(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    if "ferretdbFeatures" not in await mongo_db.client.admin.command("buildInfo"):
        pytest.skip("the test database is not FerretDB")
    coll = mongo_db["writes"]
    await coll.insert_one({"_id": "warm-up"})
    ratios = []
    for attempt in range(3):
        started = time.perf_counter()
        for i in range(WRITES):
            await coll.insert_one({"_id": f"seq-{attempt}-{i}"})
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(
            *(coll.insert_one({"_id": f"par-{attempt}-{i}"}) for i in range(WRITES))
        )
        ratios.append((time.perf_counter() - started) / sequential)
    assert await coll.count_documents({}) == 1 + 2 * 3 * WRITES
    assert statistics.median(ratios) < 1.3, (
        f"{WRITES} concurrent inserts took {ratios} x the time of the same inserts in "
        "sequence: writers back off in SQLite's busy handler (is the write turn patched in?)"
    )
