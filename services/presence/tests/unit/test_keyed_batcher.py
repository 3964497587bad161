"""KeyedBatcher: the batching that every read by key of concurrent calls goes through."""

from __future__ import annotations

import asyncio

from presence_service.service_layer.batching import KeyedBatcher


async def test_a_call_made_while_its_key_is_being_read_gets_the_next_read() -> None:
    """The guarantee a sign-in's read of ``n+1`` relies on: a read submitted after a write
    starts after it, even when a read of the same key is already in flight."""
    stored = {"k": 0}
    batches: list[list[str]] = []
    reading, release = asyncio.Event(), asyncio.Event()

    async def read(keys: list[str]) -> dict[str, int]:
        batches.append(keys)
        snapshot = {k: stored.get(k, -1) for k in keys}  # what the query sees: its start
        reading.set()
        await release.wait()
        return snapshot

    batcher = KeyedBatcher[str, int](read, max_batch=4)
    first = asyncio.create_task(batcher.submit("k"))
    await reading.wait()
    stored["k"] = 1  # a caller's write, then its read (the first read is still in flight)
    later = [asyncio.create_task(batcher.submit(k)) for k in ("k", "k", "a", "b", "c", "d")]
    # runs after the tasks above have queued their keys (callbacks run in FIFO order)
    asyncio.get_running_loop().call_soon(release.set)

    assert await first == 0
    assert await asyncio.gather(*later) == [1, 1, -1, -1, -1, -1]
    # same key queued together: one read; the batch is capped at max_batch distinct keys
    assert batches == [["k"], ["k", "a", "b", "c"], ["d"]]


async def test_a_failed_batch_fails_its_callers_only() -> None:
    async def read(keys: list[str]) -> dict[str, str]:
        if "bad" in keys:
            raise ConnectionError("database down")
        return {k: k.upper() for k in keys}

    batcher = KeyedBatcher[str, str](read, max_batch=8)
    failed = await asyncio.gather(
        batcher.submit("bad"), batcher.submit("x"), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert await asyncio.gather(batcher.submit("y"), batcher.submit("z")) == ["Y", "Z"]
