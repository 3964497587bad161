"""Asynchronous materialisation of the read model (queue, assignee, audit trail).

The source of truth is the journal plus the recorded decisions, written before the offsets are
committed; the read model is derived from them. Writing it off the consumer's path keeps
decisions first: a batch never waits for read-model writes. Pending writes coalesce per
conversation. A crash loses only pending view writes: the next owner re-folds its partitions
on assignment and rewrites every stored view it re-folds (then only a view whose fingerprint
changed). On revocation the owner drops the pending views of the partitions it gives up, after
the chunk in flight (if any) landed (``drop`` takes the writer's lock): the new owner repairs
them on assignment, and two instances never write the same view concurrently.

Every write is by exact ``_id`` (inserts of new conversations, ``ReplaceOne({_id})`` upserts of
changed ones), which FerretDB serves through the unique index. Chunks are sized adaptively so
that one write takes about ``target_seconds``, and the writer rests between chunks: the read
model takes a bounded share of the database's write time, whatever its current speed.

The writer holds a lock of its own, beside the consumer's batches (it used to write under the
consumer's lock: a batch then waited behind a chunk, and at half of the peak rate the lock was
busy most of the time). A/B on the devstack, 2026-12-02, the routing README's known limits:
with the devstack's FerretDB write turn (``libs/devstack``: writes queue FIFO instead of
sleeping in SQLite's busy handler) the writer beside the batches halved R2's p99.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from itertools import islice

from routing_service.service_layer.ports import ConversationKey, ConversationView, ViewStore

log = logging.getLogger(__name__)


class ChunkSizer:
    """Documents per write so that one write takes about ``target`` seconds (AIMD-like)."""

    def __init__(self, *, target: float, initial: int, maximum: int) -> None:
        self.target = target
        self.size = initial
        self.maximum = maximum

    def observe(self, docs: int, took: float) -> None:
        if docs < self.size:
            return  # a partial chunk says little about the cost of a full one
        if took > self.target:
            self.size = max(1, self.size // 2)
        elif took < self.target / 2:
            self.size = min(self.maximum, self.size * 2)


async def _plain_acquire(lock: asyncio.Lock, expected: float) -> None:
    await lock.acquire()


class ViewWriter:
    def __init__(
        self,
        store: ViewStore,
        *,
        exclusive: asyncio.Lock | None = None,
        target_seconds: float = 0.01,
        max_chunk: int = 500,
        pause_factor: float = 0.5,
        idle_gap: float = 0.25,
        idle_boost: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        #: When no batch produced views for ``idle_gap`` seconds the consumer is idle (caught
        #: up): chunks are ``idle_boost`` times larger, so a backlog drains quickly; a batch
        #: arriving then waits for at most one such chunk.
        self._idle_gap = idle_gap
        self._idle_boost = idle_boost
        self._max_chunk = max_chunk
        self._last_submit = 0.0
        #: Updates (replaces) and inserts have different costs: one sizer each.
        self._updates = ChunkSizer(target=target_seconds, initial=8, maximum=max_chunk)
        self._inserts = ChunkSizer(target=target_seconds, initial=32, maximum=max_chunk)
        #: After each chunk the writer rests ``pause_factor`` x its duration (lock released),
        #: so the read model never takes more than ~2/3 of the database's write time.
        self._pause_factor = pause_factor
        self._pending: dict[ConversationKey, tuple[ConversationView, bool]] = {}
        #: Keys of ``_pending`` whose conversation is not stored yet (ordered set).
        self._fresh: dict[ConversationKey, None] = {}
        self._wake = asyncio.Event()
        #: Held while a chunk is written (and by ``drop`` and ``flush``).
        self._exclusive = exclusive or asyncio.Lock()
        #: Keys of the chunk being written: still pending until it landed.
        self._in_flight: set[ConversationKey] = set()
        self._acquire: Callable[[asyncio.Lock, float], Awaitable[None]] = _plain_acquire
        self._took = 0.0

    def yield_to(self, acquire: Callable[[asyncio.Lock, float], Awaitable[None]]) -> None:
        """Take the lock for each chunk through ``acquire`` (told the previous chunk's time):
        the owner's ``acquire_yielding`` lets a decision about to become final go first."""
        self._acquire = acquire

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def submit(self, views: Iterable[ConversationView], new_keys: set[ConversationKey]) -> None:
        for v in views:
            key = (v.state.org_id, v.state.conversation_id)
            was_new = self._pending[key][1] if key in self._pending else False
            self._pending[key] = (v, was_new or key in new_keys)
            if was_new or key in new_keys:
                self._fresh[key] = None
        self._last_submit = self._clock()
        self._wake.set()

    def _next_chunk(self) -> tuple[list[ConversationKey], ChunkSizer, int]:
        """Keys to write next, the sizer to learn from and the idle boost of the chunk."""
        idle = self._clock() - self._last_submit > self._idle_gap
        boost = self._idle_boost if idle else 1
        # new conversations first (cheap inserts), then replaces, oldest pending first
        sizer = self._inserts if self._fresh else self._updates
        size = min(self._max_chunk, sizer.size * boost)
        source = self._fresh if self._fresh else self._pending
        return list(islice(source, size)), sizer, boost

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._acquire(self._exclusive, self._took)
                try:
                    keys, sizer, boost = self._next_chunk()
                    started = time.perf_counter()
                    try:
                        written = await self._write_some(keys)
                    except Exception:
                        # the views went back to pending; the decisions are safe already
                        log.warning("read-model write failed; retrying", exc_info=True)
                        written = 0
                    took = self._took = time.perf_counter() - started
                    # a boosted chunk teaches the sizer too, per unboosted chunk: on a slow
                    # database its 8x chunk took ~400 ms of the database's write time
                    sizer.observe(written // boost, took / boost)
                finally:
                    self._exclusive.release()
                await asyncio.sleep(1.0 if not written else min(took * self._pause_factor, 0.5))

    def pending(self, key: ConversationKey) -> bool:
        """Is a view of this conversation not stored yet (queued or being written)?"""
        return key in self._pending or key in self._in_flight

    async def drop(self, partitions: set[int]) -> None:
        """Forget pending views of partitions given up, once the chunk in flight landed."""
        async with self._exclusive:
            for k in [k for k, (v, _) in self._pending.items() if v.partition in partitions]:
                del self._pending[k]
                self._fresh.pop(k, None)

    async def flush(self) -> None:
        """Write everything pending now."""
        async with self._exclusive:
            keys = list(self._pending)
            step = self._max_chunk
            for i in range(0, len(keys), step):
                await self._write_some(keys[i : i + step])

    async def _write_some(self, keys: list[ConversationKey]) -> int:
        taken = [(k, self._pending.pop(k)) for k in keys if k in self._pending]
        if not taken:
            return 0
        for k, _ in taken:
            self._fresh.pop(k, None)
        self._in_flight = {k for k, _ in taken}
        try:
            await self._store.write_views(
                [v for _, (v, _) in taken], new_keys={k for k, (_, new) in taken if new}
            )
        except BaseException:
            for k, item in taken:  # put back unless a newer version arrived meanwhile
                if k not in self._pending:
                    self._pending[k] = item
                    if item[1]:
                        self._fresh[k] = None
            self._wake.set()
            raise
        finally:
            self._in_flight = set()
        return len(taken)
