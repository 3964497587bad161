"""This replica's progress floor: the event time below which it will append no more
transitions.

A transition this replica may still publish has an ``occurred_at`` that is one of:
- the start of a request in flight (sign-in, sign-out, force: their transitions happen at
  the clock read when the request began, or later) - ``hold``;
- the deadline of a session it serves from memory, until its expiry is decided
  (``LiveSessions.earliest_deadline``);
- the event time of a transition it claimed and has not yet seen acknowledged by Kafka
  (``claiming`` / ``published``);
- the stored deadline of an overdue session its sweeper is ending, or the end time of a
  session end interrupted before its transition - a *retroactive* hold (``hold_back``).
Everything else it does later starts with a fresh clock read, i.e. after ``now``.

The floor a replica **reported** (wrote to the store for the marks publisher) must stay a
lower bound of everything it appends afterwards. A retroactive hold goes below it: such a
time was covered by what a dead replica left in the store (its orphaned session, with its
stored deadline), and the actor taking the leftover over removes exactly that cover. So the
actor first reports its lowered floor, and only then touches the leftover; the publisher
reads the leftovers *before* the floors (``marks.mark_round``). Whichever order the two
replicas' reads and writes take, one of the two covers the time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime, timedelta

from presence_service.service_layer.ports import ReplicaFloor

#: The lease of the replica that publishes the marks (``marks``).
MARKS_LEASE = "progress_publisher"
#: Stored and published times have millisecond precision.
TICK = timedelta(milliseconds=1)
#: How many published keys a replica remembers (the relay's per-agent order check).
RECENT_KEYS = 10_000


class ProgressFloor:
    def __init__(self) -> None:
        self._holds: dict[int, datetime] = {}
        self._ids = itertools.count()
        self._unpublished: dict[str, datetime] = {}
        self._fast_path: set[str] = set()
        self._claimers: dict[str, int] = {}
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: The highest floor this replica reported to the store (None: none yet).
        self._reported: datetime | None = None

    def reported(self, value: datetime) -> None:
        if self._reported is None or value > self._reported:
            self._reported = value

    def behind_report(self, at: datetime) -> bool:
        """Would a transition at ``at`` fall at or below a floor already reported? Then the
        lowered floor must be reported before the action that makes the transition."""
        return self._reported is not None and at - TICK < self._reported

    @contextlib.contextmanager
    def hold(self, at: datetime) -> Iterator[None]:
        """While inside, the floor stays at or below ``at``."""
        token = next(self._ids)
        self._holds[token] = at
        try:
            yield
        finally:
            del self._holds[token]

    def claiming(self, key: str, occurred_at: datetime) -> None:
        self._unpublished[key] = occurred_at
        self._claimers[key] = self._claimers.get(key, 0) + 1
        self._fast_path.add(key)

    def lost(self, key: str) -> None:
        """This claim lost to another. If the winner is a concurrent claim of this same
        replica, its hold must stay until the record is published."""
        left = self._claimers.get(key, 1) - 1
        if left > 0:
            self._claimers[key] = left
            return
        self._claimers.pop(key, None)
        self._unpublished.pop(key, None)
        self._fast_path.discard(key)

    def published(self, key: str) -> None:
        """Kafka acknowledged the record."""
        self._claimers.pop(key, None)
        self._unpublished.pop(key, None)
        self._fast_path.discard(key)
        self._recent[key] = None
        if len(self._recent) > RECENT_KEYS:
            self._recent.popitem(last=False)

    def recently_published(self, key: str) -> bool:
        """Published by this replica lately (its stored flag may still be on its way)."""
        return key in self._recent

    def hand_to_scan(self, key: str) -> None:
        """The fast path failed: the scan publishes it (the floor keeps holding)."""
        self._fast_path.discard(key)

    def is_in_flight(self, key: str) -> bool:
        """Claimed here and still with the fast path (scans skip it: no duplicate)."""
        return key in self._fast_path

    def floor(self, now: datetime, earliest_deadline: datetime | None) -> datetime:
        """Strictly below everything that may still come: a transition may carry exactly
        ``now`` (same millisecond) or exactly a held time."""
        candidates = [now, *self._holds.values(), *self._unpublished.values()]
        if earliest_deadline is not None:
            candidates.append(earliest_deadline)
        return min(candidates) - TICK


class FloorReports:
    """Serializes a replica's floor writes: each computes its value right before writing,
    so a write that lands later never carries an older (higher) value; a caller that needs
    its hold reported waits for a write that *started* after its call (one write serves
    every caller that queued meanwhile)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._started = 0
        self._finished = 0

    async def report(self, write: Callable[[], Awaitable[None]], *, always: bool = False) -> None:
        """``always``: this very write must happen (e.g. it carries a special liveness time)."""
        ticket = self._started + 1
        async with self._lock:
            if self._finished >= ticket and not always:
                return  # a write that started after this call has landed
            self._started += 1
            number = self._started
            await write()
            self._finished = number


def global_watermark(
    own_floor: datetime,
    own_id: str,
    floors: list[ReplicaFloor],
    orphans: Mapping[str, datetime | None],
    now: datetime,
    replica_ttl: timedelta,
) -> datetime:
    """The event time up to which every replica has appended all its transitions.

    - a live replica (floor written within ``replica_ttl``) contributes its floor: floors
      only rise, so the last one written is a lower bound of its current one;
    - a dead replica claims nothing any more; what it left behind (sessions nobody took
      over, records nobody published) is in the store: ``orphans[id]``, its earliest event
      time (None: nothing left), which a transition may still carry exactly: the watermark
      stays one tick below it. Until that was looked at, its last floor holds.
    """
    candidates = [own_floor]
    for f in floors:
        if f.replica_id == own_id:
            continue
        if now - f.at <= replica_ttl or f.replica_id not in orphans:
            candidates.append(f.floor)
        elif (left := orphans[f.replica_id]) is not None:
            candidates.append(left - TICK)  # a transition may carry exactly that time
    return min(candidates)
