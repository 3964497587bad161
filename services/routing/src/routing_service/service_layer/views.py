"""Asynchronous materialisation of the read model (queue, assignee, audit trail).

The source of truth is the journal plus the recorded decisions, written before the offsets are
committed; the read model is derived from them. Writing it off the consumer's path keeps
decisions fast when the database is slow to update (FerretDB v1 scans a collection on every
update). Pending writes coalesce per conversation. A crash loses only pending view writes: the
next owner re-folds its partitions on assignment and rewrites every view whose stored
fingerprint differs. On revocation the owner drops the pending views of the partitions it gives
up (the writer writes only under the consumer's lock, so nothing is in flight then): the new
owner repairs them on assignment, and two instances never write the same view concurrently.
The writer is also duty-cycled (it pauses as long as its last write took), so a database that
is slow to update (FerretDB) never spends more than about half its time on the read model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from routing_service.service_layer.ports import ConversationKey, ConversationView, RoutingStore

log = logging.getLogger(__name__)


def now_overdue(since: float, max_lag: float) -> bool:
    return time.monotonic() - since > max_lag


class ViewWriter:
    def __init__(
        self,
        store: RoutingStore,
        *,
        exclusive: asyncio.Lock | None = None,
        chunk: int = 1,
        pause_factor: float = 1.0,
        idle_gap: float = 0.05,
        max_lag: float = 10.0,
    ) -> None:
        self._pause_factor = pause_factor
        #: Updates wait until no batch produced views for ``idle_gap`` seconds, unless the
        #: oldest pending view is older than ``max_lag`` (decisions first, views when idle).
        self._idle_gap = idle_gap
        self._max_lag = max_lag
        self._last_submit = 0.0
        self._oldest: float | None = None
        self._store = store
        self._chunk = chunk
        self._pending: dict[ConversationKey, tuple[ConversationView, bool]] = {}
        self._wake = asyncio.Event()
        #: Held by the consumer while it handles a batch: background writes go in small
        #: chunks between batches, so a slow database update never delays a decision by more
        #: than one chunk.
        self._exclusive = exclusive or asyncio.Lock()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def submit(self, views: Iterable[ConversationView], new_keys: set[ConversationKey]) -> None:
        for v in views:
            key = (v.state.org_id, v.state.conversation_id)
            was_new = self._pending[key][1] if key in self._pending else False
            self._pending[key] = (v, was_new or key in new_keys)
        now = time.monotonic()
        self._last_submit = now
        if self._oldest is None:
            self._oldest = now
        self._wake.set()

    async def _wait_for_quiet(self) -> None:
        while True:
            now = time.monotonic()
            busy = now - self._last_submit < self._idle_gap
            overdue = self._oldest is not None and now - self._oldest > self._max_lag
            if not busy or overdue:
                return
            await asyncio.sleep(self._idle_gap)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                fresh = [k for k, (_, new) in self._pending.items() if new][:500]
                if not fresh:
                    await self._wait_for_quiet()
                async with self._exclusive:
                    started = time.perf_counter()
                    # new conversations are cheap inserts: many at once; updates one at a time
                    fresh = [k for k, (_, new) in self._pending.items() if new][:500]
                    await self._write_some(fresh or list(self._pending)[: self._chunk])
                    took = time.perf_counter() - started
                    if self._oldest is not None and now_overdue(self._oldest, self._max_lag):
                        self._oldest = time.monotonic()  # served one overdue: next window
                    if not self._pending:
                        self._oldest = None
                await asyncio.sleep(min(took * self._pause_factor, 1.0))

    def drop(self, partitions: set[int]) -> None:
        """Forget pending views of partitions given up (call with the exclusive lock held)."""
        for k in [k for k, (v, _) in self._pending.items() if v.partition in partitions]:
            del self._pending[k]

    async def flush(self, partitions: set[int] | None = None) -> None:
        """Write what is pending now (call with the exclusive lock held)."""
        keys = [
            k
            for k, (v, _) in self._pending.items()
            if partitions is None or v.partition in partitions
        ]
        for i in range(0, len(keys), self._chunk):
            await self._write_some(keys[i : i + self._chunk])

    async def _write_some(self, keys: list[ConversationKey]) -> None:
        taken = [(k, self._pending.pop(k)) for k in keys if k in self._pending]
        if not taken:
            return
        try:
            await self._store.write_views(
                [v for _, (v, _) in taken], new_keys={k for k, (_, new) in taken if new}
            )
        except BaseException:
            for k, item in taken:  # put back unless a newer version arrived meanwhile
                self._pending.setdefault(k, item)
            self._wake.set()
            raise
