"""ViewWriter: background read-model writes in small chunks, under a lock of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from inbox_testing import wait_until
from routing_service.adapters.memory import InMemoryStore
from routing_service.domain.model import ConversationState, Queue
from routing_service.service_layer.ports import ConversationKey, ConversationView
from routing_service.service_layer.views import ChunkSizer, ViewWriter


def view(cid: str, queue: Queue = Queue.NEW, partition: int = 0) -> ConversationView:
    return ConversationView(partition, ConversationState("org", cid, queue), ())


class RecordingStore(InMemoryStore):
    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], set[str]]] = []
        self.fail_first = fail_first
        self.lock_held_during_write: list[bool] = []
        self.lock: asyncio.Lock | None = None
        #: Set: writes wait until it is set again (a write in flight, held open).
        self.hold = asyncio.Event()
        self.hold.set()
        self.writing = asyncio.Event()

    async def write_views(
        self, views: Sequence[ConversationView], *, new_keys: set[ConversationKey]
    ) -> None:
        if self.lock is not None:
            self.lock_held_during_write.append(self.lock.locked())
        self.writing.set()
        await self.hold.wait()
        self.calls.append(([v.state.conversation_id for v in views], {k[1] for k in new_keys}))
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("database down")
        await super().write_views(views, new_keys=new_keys)


def test_chunk_sizer_halves_when_slow_and_doubles_when_fast() -> None:
    s = ChunkSizer(target=0.01, initial=8, maximum=32)
    s.observe(8, 0.05)
    assert s.size == 4
    s.observe(2, 0.0001)  # partial chunk: no information
    assert s.size == 4
    for _ in range(10):
        s.observe(s.size, 0.0001)
    assert s.size == 32
    for _ in range(10):
        s.observe(s.size, 1.0)
    assert s.size == 1


async def test_writes_new_conversations_first_coalesces_and_holds_the_lock() -> None:
    store = RecordingStore()
    lock = asyncio.Lock()
    store.lock = lock
    writer = ViewWriter(store, exclusive=lock)
    writer.submit([view("old-1"), view("old-2")], set())
    writer.submit([view("new-1")], {("org", "new-1")})
    writer.submit([view("old-1", Queue.PENDING)], set())  # coalesces with the first
    task = asyncio.create_task(writer.run())
    try:
        await wait_until(lambda: writer.backlog == 0, timeout=5)
    finally:
        task.cancel()
    assert store.calls[0] == (["new-1"], {"new-1"})
    written = [cid for ids, _ in store.calls for cid in ids]
    assert sorted(written) == ["new-1", "old-1", "old-2"]
    assert store.views[("org", "old-1")].state.queue == Queue.PENDING
    assert all(store.lock_held_during_write)


async def test_failed_write_is_retried_and_keeps_the_newest_version() -> None:
    store = RecordingStore(fail_first=1)
    writer = ViewWriter(store)
    writer.submit([view("c1")], {("org", "c1")})
    task = asyncio.create_task(writer.run())
    try:
        await wait_until(lambda: len(store.calls) >= 1, timeout=5)
        writer.submit([view("c1", Queue.RESOLVED)], set())
        await wait_until(lambda: ("org", "c1") in store.views, timeout=5)
    finally:
        task.cancel()
    assert len(store.calls) == 2  # the writer survived the failure and retried
    assert store.views[("org", "c1")].state.queue == Queue.RESOLVED


async def test_drop_forgets_pending_views_of_revoked_partitions() -> None:
    store = RecordingStore()
    writer = ViewWriter(store)
    writer.submit([view("a", partition=0), view("b", partition=1)], {("org", "a"), ("org", "b")})
    await writer.drop({1})
    await writer.flush()
    assert set(store.views) == {("org", "a")}
    assert writer.backlog == 0


async def test_a_view_in_flight_is_pending_and_drop_waits_for_it_to_land() -> None:
    """What revocation relies on: once ``drop`` returned, no write of a given-up partition is
    in flight (the next owner may write it), and compaction or eviction never takes a view
    that is being written for a stored one."""
    store = RecordingStore()
    store.hold.clear()
    writer = ViewWriter(store)
    writer.submit([view("a", partition=1)], {("org", "a")})
    task = asyncio.create_task(writer.run())
    try:
        await asyncio.wait_for(store.writing.wait(), timeout=5)
        assert writer.backlog == 0 and writer.pending(("org", "a"))
        dropping = asyncio.create_task(writer.drop({1}))
        await asyncio.sleep(0)  # let it queue for the writer's lock: it must not return yet
        assert not dropping.done()
        store.hold.set()
        await asyncio.wait_for(dropping, timeout=5)
        assert ("org", "a") in store.views and not writer.pending(("org", "a"))
    finally:
        task.cancel()


async def test_chunks_are_boosted_when_the_consumer_is_idle() -> None:
    store = RecordingStore()
    now = [100.0]
    writer = ViewWriter(store, idle_gap=0.25, idle_boost=8, clock=lambda: now[0])
    writer.submit([view(f"c{i}") for i in range(300)], {("org", f"c{i}") for i in range(300)})
    now[0] += 0.3  # no submit since: idle
    keys, sizer, boost = writer._next_chunk()
    assert boost == 8 and len(keys) == 32 * 8
    # a boosted chunk slower than 8 x the target halves the chunk it is a multiple of
    sizer.observe(len(keys) // boost, 8 * 0.05 / boost)
    assert writer._next_chunk()[0] == keys[: 16 * 8]
    busy = ViewWriter(store, idle_gap=60.0)
    busy.submit([view(f"d{i}") for i in range(100)], set())
    keys, sizer, boost = busy._next_chunk()
    assert boost == 1 and len(keys) == 8  # initial replace chunk while batches arrive
