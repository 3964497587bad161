from __future__ import annotations

import asyncio

from replies_service.service_layer.search_index import RevisionReader


async def test_revision_reads_are_coalesced_but_never_stale() -> None:
    value = "r0"
    started: list[str] = []
    gate = asyncio.Event()

    async def fetch(org: str) -> str | None:
        seen = value  # the value at the moment the read is sent
        started.append(seen)
        await gate.wait()
        return seen

    reader = RevisionReader(fetch)
    first = asyncio.create_task(reader.read("org"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == ["r0"]
    value = "r1"  # a write completes while the first read is in flight
    later = [asyncio.create_task(reader.read("org")) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == ["r0"]  # later callers did not start reads of their own
    gate.set()
    assert await first == "r0"
    assert [await t for t in later] == ["r1"] * 10  # they joined the next read, sent after r1
    assert started == ["r0", "r1"]
    assert await reader.read("org") == "r1"


async def test_revision_read_errors_reach_every_waiter() -> None:
    calls = 0

    async def fetch(org: str) -> str | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("db down")

    reader = RevisionReader(fetch)
    results = await asyncio.gather(*(reader.read("org") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert calls == 2


async def test_recent_reads_are_reused_until_a_local_write() -> None:
    calls = 0

    async def fetch(org: str) -> str | None:
        nonlocal calls
        calls += 1
        return f"r{calls}"

    reader = RevisionReader(fetch, max_age_seconds=60)
    assert await reader.read("org") == "r1"
    assert await reader.read("org") == "r1"  # reused: bounded staleness for other replicas
    reader.forget("org")  # this replica wrote: never reuse a read sent before that
    assert await reader.read("org") == "r2"
    assert calls == 2


async def test_an_aging_read_is_refreshed_ahead_without_making_callers_wait() -> None:
    calls = 0
    gate = asyncio.Event()
    gate.set()

    async def fetch(org: str) -> str | None:
        nonlocal calls
        calls += 1
        await gate.wait()
        return f"r{calls}"

    now = [100.0]
    reader = RevisionReader(fetch, max_age_seconds=0.2, clock=lambda: now[0])
    assert await reader.read("org") == "r1"
    now[0] += 0.12  # past a quarter of the max age: usable, but refreshed ahead
    gate.clear()
    assert await reader.read("org") == "r1"  # answered at once, the refresh runs behind it
    await asyncio.sleep(0)
    assert calls == 2
    assert await reader.read("org") == "r1"  # one refresh in flight at a time
    assert calls == 2
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await reader.read("org") == "r2"
    reader.forget("org")  # a local write still forces a read sent after it
    assert await reader.read("org") == "r3"
