"""A priority gate in front of database writes.

Why: FerretDB/SQLite serializes writes (``BEGIN IMMEDIATE``); concurrent writers that found
the database locked backed off in SQLite's busy handler with sleeps of up to 100 ms, which is
where the heartbeat p99 of hundreds of milliseconds came from (the devstack's FerretDB now
queues them FIFO itself). Queueing writes here lets request-path writes (heartbeats,
sign-ins) overtake background writes (sweeper, relay), so the hot path waits for at most the
background writes already in flight, and lets writes of one kind form group commits. With
real MongoDB raise the number of slots (``PRESENCE_MONGODB_WRITE_CONCURRENCY``).

Background tasks mark themselves (``service_layer.io_priority``); the gate reads the mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from presence_service.service_layer.io_priority import is_background

URGENT, FOREGROUND, BACKGROUND = -1, 0, 1


class WriteGate:
    """At most ``slots`` writes at once; waiting foreground writes go before background ones,
    FIFO within a priority."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    async def _acquire(self, urgent: bool = False) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        priority = URGENT if urgent else BACKGROUND if is_background() else FOREGROUND
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        if self._free > 0:  # waiters queued ahead may all be cancelled: hand over now
            self._wake()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # we were handed the slot but will not use it
            raise

    def _wake(self) -> None:
        while self._free > 0 and self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self._free -= 1
                future.set_result(None)

    def _release(self) -> None:
        self._free += 1
        self._wake()

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """``urgent``: before every other waiting write (tiny liveness writes that must not
        starve behind a burst, e.g. the progress floor)."""
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()
