"""Coalesce concurrent calls for distinct keys into one batch call.

Calls that arrive while a batch runs wait for the *next* batch (its reads start after their
call, so they see whatever the caller changed before calling); calls for the same key that
queue up together share one result. An idle service runs each call alone, at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

#: Run one batch: a result for every key.
RunBatch = Callable[[list[K]], Awaitable[dict[K, R]]]


class KeyedBatcher(Generic[K, R]):
    def __init__(self, run: RunBatch[K, R], *, max_batch: int) -> None:
        self._run_batch = run
        self._max_batch = max_batch
        self._pending: dict[K, list[asyncio.Future[R]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, key: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            keys = list(self._pending)[: self._max_batch]
            waiters = {key: self._pending.pop(key) for key in keys}
            try:
                results = await self._run_batch(keys)
            except BaseException as exc:  # every caller of this batch sees it
                for futures in waiters.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):  # shutting down: nobody is left
                    for futures in self._pending.values():
                        for future in futures:
                            future.cancel()
                    self._pending.clear()
                    raise
                continue
            for key, futures in waiters.items():
                for future in futures:
                    if not future.done():  # the caller was cancelled
                        future.set_result(results[key])
