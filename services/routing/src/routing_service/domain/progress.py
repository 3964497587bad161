"""Event-time progress: up to which event time an owner's inputs are complete (pure).

A decision at event time ``t`` is *final* once nothing that could still arrive can change it:
every input it depends on has progressed to ``t``. Two kinds of inputs:

- **presence** (our own producer): presence publishes progress marks ("every transition with
  ``occurred_at`` <= W is on this partition"); routing's presence consumer relays them, per
  presence partition, after it recorded the transitions they cover. Presence progress is the
  minimum over all presence partitions of the maximum relayed value.
- **conversation streams** (messages and conversations topics, outside producers): each
  (topic, partition) is taken in partition order, so the latest ``occurred_at`` consumed on it
  (its *head*) is complete for that input; and once the consumer has handed out every record
  appended to the input before wall time ``c`` (it is *complete as of* ``c``), nothing older
  than ``c - L`` can still come without being late by more than the allowed lateness ``L``,
  so the input's progress is at least ``c - L``. ``c`` is what the consumer *knows*, never
  the current time: a consumer that has not heard from the broker for a while (a starved
  process, a slow fetch) is complete only as of its last exchange, not as of now.

The decisions of a conversation on partition ``p`` are final up to
``min(presence progress, progress of messages[p], progress of conversations[p])``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: Strictly below ``now - L``: an event stamped exactly ``now - L`` may still come (lateness L).
_TICK = timedelta(microseconds=1)


def idle_progress(complete_as_of: datetime, lateness: timedelta) -> datetime:
    """Progress of an input complete as of a wall time (or of a presence partition without
    marks)."""
    return complete_as_of - lateness - _TICK


def stream_progress(
    head: datetime | None, *, complete_as_of: datetime | None, lateness: timedelta
) -> datetime | None:
    """Progress of one conversation input: its head, and ``complete_as_of - L``."""
    idle = idle_progress(complete_as_of, lateness) if complete_as_of is not None else None
    return max([t for t in (head, idle) if t is not None], default=None)


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
    time the consumer is complete as of, minus the allowed lateness.
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

    def progress(
        self, now: datetime, complete_as_of: Mapping[int, datetime | None]
    ) -> dict[int, datetime]:
        out: dict[int, datetime] = {}
        for p, (watermark, since) in self.latest.items():
            value = watermark
            complete = complete_as_of.get(p)
            if now - since > self.timeout and complete is not None:
                fallback = idle_progress(complete, self.lateness)
                value = max(value, fallback) if value else fallback
            if value is not None:
                out[p] = value
        return out
