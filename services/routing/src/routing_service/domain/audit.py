"""Audit-trail retention (README, "Audit-trail retention").

A conversation's snapshot (and so its view) keeps only its most recent audit entries; at
compaction the older ones move to an *archive segment*, kept for the retention period after
its last entry's event time, then deleted. Page positions are absolute (counted from the
conversation's first entry ever), so a page token stays valid when entries move from the
view to a segment or a segment expires: paging never repeats nor skips a retained entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from routing_service.domain.model import AuditEntry, AuditKind, Queue, Snapshot
from routing_service.domain.values import value


@value
class WaitingReplay:
    """Where a replay of the audit trail stands (automatic assignment's waiting period):
    queue, assignee, and the entry that started the current waiting period (NEW and
    unassigned; None: not waiting)."""

    queue: Queue | None = None
    assignee: str | None = None
    waiting_since: AuditEntry | None = None


def replay(entries: Iterable[AuditEntry], start: WaitingReplay | None = None) -> WaitingReplay:
    """Replay ``entries`` from ``start``: replaying a trail in two parts equals replaying it
    whole, so an archive carries the replay of what it holds."""
    at = start or WaitingReplay()
    queue, assignee, since = at.queue, at.assignee, at.waiting_since
    for a in entries:
        if a.kind in (AuditKind.CREATED, AuditKind.QUEUE_MOVED):
            queue = a.to_queue
        elif a.kind in (AuditKind.ASSIGNED, AuditKind.AUTO_ASSIGNED):
            assignee = a.assignee_id
        elif a.kind is AuditKind.UNASSIGNED or (
            # a published unassignment whose assignment was replaced meanwhile is in the trail
            # too: it counts only if it names the assignee of the moment
            a.kind is AuditKind.AUTO_UNASSIGNED and a.previous_assignee_id == assignee
        ):
            assignee = None
        waiting = queue is Queue.NEW and assignee is None
        since = (since or a) if waiting else None
    return WaitingReplay(queue, assignee, since)


@dataclass(frozen=True, slots=True)
class AuditSegment:
    """Archived entries ``first`` .. ``first + count - 1`` (absolute positions)."""

    first: int
    count: int
    #: Event time of its last entry + the retention period: deleted then.
    expire_at: datetime

    @property
    def end(self) -> int:
        return self.first + self.count


@dataclass(frozen=True, slots=True)
class AuditArchive:
    """The part of a conversation's trail that is no longer in its snapshot."""

    #: Entries archived so far: the snapshot's first entry has this absolute position.
    base: int = 0
    #: Segments not expired as of the last compaction, oldest first, contiguous up to ``base``.
    segments: tuple[AuditSegment, ...] = ()
    #: The waiting-period replay of every archived entry.
    carry: WaitingReplay = WaitingReplay()  # noqa: RUF009 - a @value: immutable

    def live(self, now: datetime) -> list[AuditSegment]:
        return [s for s in self.segments if s.expire_at > now]

    def first_retained(self, now: datetime) -> int:
        """Absolute position of the oldest entry still retained at ``now``."""
        live = self.live(now)
        return live[0].first if live else self.base


NO_ARCHIVE = AuditArchive()


def archive_of(snapshot: Snapshot | None) -> AuditArchive:
    if snapshot is None or snapshot.archive is None:
        return NO_ARCHIVE
    return snapshot.archive


@dataclass(frozen=True, slots=True)
class AuditRetention:
    """``keep`` most recent entries always stay in the snapshot and the view; once it holds
    twice that many, the older ones are archived (segments of at least ``keep`` entries)."""

    keep: int = 100
    retention: timedelta = timedelta(days=90)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError("keep at least one audit entry in the view")


@dataclass(frozen=True, slots=True)
class ArchivedEntries:
    segment: AuditSegment
    entries: tuple[AuditEntry, ...]


def archive_audit(
    snapshot: Snapshot, rules: AuditRetention
) -> tuple[Snapshot, ArchivedEntries | None]:
    """The snapshot with its older entries archived, and the segment to store (None: the
    snapshot keeps its trail). Segments expired as of the horizon leave the archive's list."""
    old = archive_of(snapshot)
    if len(snapshot.audit) < 2 * rules.keep:
        return snapshot, None
    cut = len(snapshot.audit) - rules.keep
    moved = snapshot.audit[:cut]
    segment = AuditSegment(old.base, cut, moved[-1].occurred_at + rules.retention)
    segments = tuple(s for s in old.segments if s.expire_at > snapshot.horizon)
    archive = AuditArchive(old.base + cut, (*segments, segment), replay(moved, old.carry))
    kept = replace(snapshot, audit=snapshot.audit[cut:], archive=archive)
    return kept, ArchivedEntries(segment, moved)


def segments_for_page(
    archive: AuditArchive, start: int, size: int, now: datetime
) -> list[AuditSegment]:
    """The archive segments a page of ``size`` entries from position ``start`` reads."""
    pos = max(start, archive.first_retained(now))
    return [s for s in archive.live(now) if s.end > pos and s.first < pos + size]


def audit_page(
    archive: AuditArchive,
    recent: Sequence[AuditEntry],
    archived: Mapping[int, Sequence[AuditEntry] | None],
    start: int,
    size: int,
    now: datetime,
) -> tuple[list[AuditEntry], int | None]:
    """One page of the trail from absolute position ``start`` and the position of the next
    page (None: this was the last). ``recent`` are the view's entries (from ``archive.base``),
    ``archived`` the segments read for this page by their ``first`` (None: deleted meanwhile,
    skipped). Entries before the oldest retained one are skipped."""
    pos = max(start, archive.first_retained(now))
    out: list[AuditEntry] = []
    for s in archive.live(now):
        if len(out) >= size:
            break
        if s.end <= pos:
            continue
        if s.first not in archived:
            break  # beyond what was read for this page: the next one reads it
        entries = archived[s.first]
        if entries is None:
            pos = s.end
            continue
        taken = list(entries[pos - s.first : pos - s.first + size - len(out)])
        out += taken
        pos = pos + len(taken) if pos + len(taken) < s.end else s.end
    if len(out) < size and pos >= archive.base:
        taken = list(recent[pos - archive.base : pos - archive.base + size - len(out)])
        out += taken
        pos += len(taken)
    total = archive.base + len(recent)
    return out, (pos if pos < total else None)
