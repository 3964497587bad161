"""Per-replica read-through cache of stored contact documents, kept fresh by change notices.

The card is the hot path and a contact changes rarely compared with how often its card is
read, so each replica keeps the documents it has read, as raw BSON (one untracked ``bytes``
object per contact: ~1 KB, and nothing for the garbage collector to walk; decoding one costs
a few µs). Freshness does not rest on a timeout: every stored profile change is announced on
``inbox.contacts.changes.v1`` *after* it is stored, and every replica drops the announced
contacts (``entrypoints.change_feed``). So a replica serves a changed contact from the
database once the notice arrives (on the devstack ~15 ms after the update was published,
ingestion included).

Two races are closed here:

- a read that started before a change was stored may finish after its notice arrived and
  would cache the old document: a load only fills the cache if no notice named its contact
  while it was in flight;
- notices published before this replica started reading the feed are not seen: the cache is
  off (every read goes to the database) until the feed is positioned, and again whenever the
  feed stops (``enable`` / ``disable``).

``max_age`` bounds an entry's life anyway, as a safety net for writes that announce nothing
(a manual database edit); ``max_entries`` bounds memory (least recently used first out).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge

Key = tuple[str, str]  # (org_id, contact_id)

LOOKUPS = Counter(
    "contacts_cache_lookups_total",
    "Contact cache lookups by result (hit, miss, bypass = cache off).",
    ["result"],
)
_HIT, _MISS, _BYPASS = (LOOKUPS.labels(result) for result in ("hit", "miss", "bypass"))
ENTRIES = Gauge("contacts_cache_entries", "Contact documents held by this replica's cache.")
INVALIDATIONS = Counter(
    "contacts_cache_invalidations_total", "Contacts named by change notices (cached or not)."
)


class ContactCache:
    def __init__(
        self, *, max_entries: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()
        self._enabled = False
        #: Bumped by every invalidation and by ``enable``; loads remember it when they start.
        self._epoch = 0
        self._enabled_at = 0
        self._loading: dict[Key, int] = {}  # key → loads in flight
        self._invalidated_at: dict[Key, int] = {}  # key → epoch of a notice during a load

    @property
    def enabled(self) -> bool:
        return self._enabled

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def enable(self) -> None:
        """The change feed is positioned: from now on every later change is announced."""
        if self._max_entries <= 0 or self._enabled:
            return
        self._epoch += 1
        self._enabled_at = self._epoch
        self._enabled = True

    def clear(self) -> None:
        """Forget everything, loads in flight included (they started before this)."""
        self._entries.clear()
        self._epoch += 1
        self._enabled_at = self._epoch
        ENTRIES.set(0)

    def disable(self) -> None:
        """The change feed stopped: forget everything and read through until re-enabled."""
        self._enabled = False
        self._entries.clear()
        ENTRIES.set(0)

    def invalidate(self, keys: Iterable[Key]) -> None:
        self._epoch += 1
        count = 0
        for key in keys:
            count += 1
            self._entries.pop(key, None)
            if key in self._loading:
                self._invalidated_at[key] = self._epoch
        INVALIDATIONS.inc(count)
        ENTRIES.set(len(self._entries))

    async def get(self, key: Key, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        """The cached document of ``key``, or ``load()``'s (cached if it is still current)."""
        if not self._enabled:
            _BYPASS.inc()
            return await load()
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry[0] < self._max_age:
            self._entries.move_to_end(key)
            _HIT.inc()
            return entry[1]
        _MISS.inc()
        started = self._epoch
        self._loading[key] = self._loading.get(key, 0) + 1
        try:
            raw = await load()
        finally:
            invalidated = self._finish_load(key)
        current = invalidated is None or invalidated <= started
        if raw is not None and current and self._enabled and started >= self._enabled_at:
            self._put(key, raw)
        return raw

    def _finish_load(self, key: Key) -> int | None:
        """Unregister one load of ``key``; the epoch of a notice that arrived meanwhile."""
        remaining = self._loading[key] - 1
        if remaining:
            self._loading[key] = remaining
            return self._invalidated_at.get(key)
        del self._loading[key]
        return self._invalidated_at.pop(key, None)

    def _put(self, key: Key, raw: bytes) -> None:
        self._entries[key] = (self._clock(), raw)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        ENTRIES.set(len(self._entries))
