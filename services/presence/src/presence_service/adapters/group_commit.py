"""Group commit: writes of one kind that queue up while the write gate is busy go to the
database together, as one command.

On FerretDB/SQLite every write command is a transaction with its own commit; a batch of 32
session inserts as one ``insert_many`` costs about what a single ``insert_one`` does, and a
``bulk_write`` of 32 ``_id`` updates about half of 32 separate updates. Under load the
batches form by themselves (everything that arrived while the previous write held the gate);
an idle service writes each item alone, with no added delay.

Under load a short linger makes them larger still (``Linger``): after a batch of at least
``after`` items, with more already waiting, the next one is taken ``seconds`` later. Each
command costs the client (PyMongo's asyncio path) and FerretDB a few hundred microseconds of
CPU whatever its size, and on a few cores that CPU is the throughput: with 32 sign-ins in
flight a batch held ~6, and a 2 ms linger raised presence's sign-in throughput by about a
quarter (README, "Benchmark", ninth round). A call that finds the runner idle is never delayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from inbox_kit.mongo import MAX_BULK_OPERATIONS

from presence_service.adapters.write_gate import WriteGate

T = TypeVar("T")

#: Flush a batch; return, per item, None (done) or the exception to raise to its caller.
Flush = Callable[[list[T]], Awaitable[list[BaseException | None]]]
#: Work on the items whose write succeeded, after the commit and outside the gate, before
#: their callers are woken (e.g. one read for the whole batch that must follow its writes).
Then = Callable[[list[T]], Awaitable[None]]


@dataclass(frozen=True)
class Linger:
    """After a batch of at least ``after`` items, wait ``seconds`` before the next (0: never)."""

    seconds: float = 0.0
    after: int = 4


NO_LINGER = Linger()


class GroupCommit(Generic[T]):
    def __init__(
        self,
        gate: WriteGate,
        flush: Flush[T],
        *,
        max_batch: int = MAX_BULK_OPERATIONS,
        then: Then[T] | None = None,
        linger: Linger = NO_LINGER,
    ) -> None:
        self._gate = gate
        self._flush = flush
        self._then = then
        self._max_batch = max_batch
        self._linger = linger
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        previous = 0  # items in the batch before (none: this runner just started)
        while self._pending:
            if (
                self._linger.seconds
                and previous >= self._linger.after
                and len(self._pending) < self._max_batch
            ):
                await asyncio.sleep(self._linger.seconds)
            async with self._gate.slot():
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                previous = len(batch)
                try:
                    outcomes = await self._flush([item for item, _ in batch])
                except Exception as exc:  # the whole command failed: every caller sees it
                    outcomes = [exc] * len(batch)
            if self._then is not None:
                done = [item for (item, _), o in zip(batch, outcomes, strict=True) if o is None]
                try:
                    if done:
                        await self._then(done)
                except Exception as exc:  # written, but what had to follow failed
                    outcomes = [exc if o is None else o for o in outcomes]
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller was cancelled
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
