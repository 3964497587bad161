"""This replica's progress floor: the event time below which it will append no more
transitions.

A transition this replica may still publish has an ``occurred_at`` that is one of:
- the start of a request in flight (sign-in, sign-out, force: their transitions happen at
  the clock read when the request began, or later) - ``hold``;
- the deadline of a session it serves from memory, until its expiry is decided
  (``LiveSessions.earliest_deadline``);
- the event time of a transition it claimed and has not yet seen acknowledged by Kafka
  (``claiming`` / ``published``);
- the stored deadline of an overdue session its sweeper is ending - ``hold``.
Everything else it does later starts with a fresh clock read, i.e. after ``now``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import datetime


class ProgressFloor:
    def __init__(self) -> None:
        self._holds: dict[int, datetime] = {}
        self._ids = itertools.count()
        self._unpublished: dict[str, datetime] = {}
        self._fast_path: set[str] = set()

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
        self._fast_path.add(key)

    def published(self, key: str) -> None:
        """Kafka acknowledged the record (or this replica lost the claim to another)."""
        self._unpublished.pop(key, None)
        self._fast_path.discard(key)

    def hand_to_scan(self, key: str) -> None:
        """The fast path failed: the scan publishes it (the floor keeps holding)."""
        self._fast_path.discard(key)

    def is_in_flight(self, key: str) -> bool:
        """Claimed here and still with the fast path (scans skip it: no duplicate)."""
        return key in self._fast_path

    def floor(self, now: datetime, earliest_deadline: datetime | None) -> datetime:
        candidates = [now, *self._holds.values(), *self._unpublished.values()]
        if earliest_deadline is not None:
            candidates.append(earliest_deadline)
        return min(candidates)
