"""Event-time progress: up to which event time an owner's inputs are complete (pure).

A decision at event time ``t`` is *final* once nothing that could still arrive can change it:
every input it depends on has progressed to ``t``. Two kinds of inputs:

- **presence** (our own producer): presence publishes progress marks ("every transition with
  ``occurred_at`` <= W is on this partition"); routing's presence consumer relays them, per
  presence partition, after it recorded the transitions they cover. Presence progress is the
  minimum over all presence partitions of the maximum relayed value.
- **conversation streams** (messages and conversations topics, outside producers): each
  (topic, partition) is taken in partition order, so the latest ``occurred_at`` consumed on it
  (its *head*) is complete for that input; while the consumer has reached the input's end
  offset (caught up), nothing older than ``now - L`` can still come without being late by more
  than the allowed lateness ``L``, so the input's progress is at least ``now - L``.

The decisions of a conversation on partition ``p`` are final up to
``min(presence progress, progress of messages[p], progress of conversations[p])``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: Strictly below ``now - L``: an event stamped exactly ``now - L`` may still come (lateness L).
_TICK = timedelta(microseconds=1)


def idle_progress(now: datetime, lateness: timedelta) -> datetime:
    """Progress of a caught-up input (or of a presence partition without marks)."""
    return now - lateness - _TICK


def stream_progress(
    head: datetime | None, *, caught_up: bool, now: datetime, lateness: timedelta
) -> datetime | None:
    """Progress of one conversation input: its head, and ``now - L`` while caught up."""
    candidates = [t for t in (head, idle_progress(now, lateness) if caught_up else None) if t]
    return max(candidates, default=None)


def earliest(times: Iterable[datetime | None]) -> datetime | None:
    """The minimum, or None if any is unknown (an unknown input holds everything back)."""
    out: datetime | None = None
    for t in times:
        if t is None:
            return None
        out = t if out is None or t < out else out
    return out


@dataclass
class PresenceProgress:
    """Maximum relayed progress per presence partition; the minimum over all of them."""

    partitions: int = 0
    marks: dict[int, datetime] = field(default_factory=dict)

    def observe(self, partitions: int, marks: Mapping[int, datetime]) -> None:
        self.partitions = max(self.partitions, partitions)
        for p, t in marks.items():
            if p not in self.marks or self.marks[p] < t:
                self.marks[p] = t

    def value(self) -> datetime | None:
        if self.partitions == 0:
            return None
        return earliest(self.marks.get(p) for p in range(self.partitions))


@dataclass
class MarkTracker:
    """What routing's presence consumer knows of the presence partitions it owns.

    ``progress`` is the latest mark of a partition; a partition without a mark for
    ``timeout`` (presence down, or a presence version that publishes none) falls back to the
    wall clock minus the allowed lateness, and only while the consumer is caught up on it.
    """

    timeout: timedelta
    lateness: timedelta
    #: partition -> (latest watermark, wall time it arrived or the partition was assigned)
    latest: dict[int, tuple[datetime | None, datetime]] = field(default_factory=dict)

    def assigned(self, partitions: Iterable[int], now: datetime) -> None:
        for p in partitions:
            self.latest.setdefault(p, (None, now))

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.latest.pop(p, None)

    def mark(self, partition: int, watermark: datetime, now: datetime) -> None:
        known, _ = self.latest.get(partition, (None, now))
        self.latest[partition] = (max(watermark, known) if known else watermark, now)

    def progress(self, now: datetime, caught_up: Mapping[int, bool]) -> dict[int, datetime]:
        out: dict[int, datetime] = {}
        for p, (watermark, since) in self.latest.items():
            value = watermark
            if now - since > self.timeout and caught_up.get(p, False):
                fallback = idle_progress(now, self.lateness)
                value = max(value, fallback) if value else fallback
            if value is not None:
                out[p] = value
        return out
