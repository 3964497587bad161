"""Audit-trail retention (domain.audit): archiving, the waiting-period carry, paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from routing_service.domain.audit import (
    AuditArchive,
    AuditRetention,
    archive_audit,
    audit_page,
    replay,
    segments_for_page,
)
from routing_service.domain.auto_assign import waiting_period
from routing_service.domain.model import (
    AuditEntry,
    AuditKind,
    ConversationState,
    Queue,
    Snapshot,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RETENTION = timedelta(days=3)


def entry(i: int, kind: AuditKind = AuditKind.QUEUE_MOVED, **kw: object) -> AuditEntry:
    fields: dict[str, object] = {"to_queue": Queue.NEW if i % 2 else Queue.PENDING, **kw}
    return AuditEntry(kind, T0 + timedelta(days=i), "actor", f"e{i}", "type", **fields)  # type: ignore[arg-type]


def snapshot(audit: tuple[AuditEntry, ...], archive: AuditArchive | None = None) -> Snapshot:
    state = ConversationState("org", "c", queue=Queue.NEW)
    return Snapshot(state, audit, audit[-1].occurred_at, archive=archive)


class Trail:
    """A conversation whose trail is archived at every compaction, stored like the store."""

    def __init__(self, keep: int, retention: timedelta = RETENTION) -> None:
        self.rules = AuditRetention(keep, retention)
        self.snap: Snapshot | None = None
        self.stored: dict[int, tuple[AuditEntry, ...]] = {}
        self.all: list[AuditEntry] = []

    def add(self, n: int) -> None:
        new = tuple(entry(len(self.all) + i) for i in range(n))
        self.all += new
        audit = (self.snap.audit if self.snap else ()) + new
        snap, moved = archive_audit(
            snapshot(audit, self.snap.archive if self.snap else None), self.rules
        )
        if moved is not None:
            self.stored[moved.segment.first] = moved.entries
        self.snap = snap

    def prune(self, now: datetime) -> None:
        assert self.snap is not None
        for s in (self.snap.archive or AuditArchive()).segments:
            if s.expire_at <= now:
                self.stored.pop(s.first, None)

    def page(self, start: int, size: int, now: datetime) -> tuple[list[AuditEntry], int | None]:
        assert self.snap is not None
        archive = self.snap.archive or AuditArchive()
        needed = segments_for_page(archive, start, size, now)
        found = {s.first: self.stored.get(s.first) for s in needed}
        return audit_page(archive, self.snap.audit, found, start, size, now)


def page_all(trail: Trail, size: int, now: datetime) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    at: int | None = 0
    while at is not None:
        got, after = trail.page(at, size, now)
        assert after is None or after > at
        out += got
        at = after
    return out


def test_older_entries_move_to_a_segment_and_the_view_keeps_the_recent_ones() -> None:
    trail = Trail(keep=3)
    trail.add(5)
    assert trail.snap is not None and trail.snap.archive is None  # fewer than 2 x keep
    trail.add(1)
    assert trail.snap.archive is not None
    assert [a.event_id for a in trail.snap.audit] == ["e3", "e4", "e5"]
    assert trail.snap.archive.base == 3
    (segment,) = trail.snap.archive.segments
    assert (segment.first, segment.count) == (0, 3)
    assert segment.expire_at == T0 + timedelta(days=2) + RETENTION
    assert page_all(trail, 2, T0) == trail.all


@given(
    st.integers(1, 4),
    st.lists(st.integers(1, 7), min_size=1, max_size=8),
    st.integers(1, 5),
    st.integers(0, 6),
)
def test_paging_returns_every_retained_entry_once_in_order(
    keep: int, batches: list[int], size: int, days: int
) -> None:
    trail = Trail(keep)
    for n in batches:
        trail.add(n)
    now = trail.all[-1].occurred_at + timedelta(days=days)  # compaction's horizon <= now
    trail.prune(now)
    got = page_all(trail, size, now)
    assert trail.snap is not None
    recent = list(trail.snap.audit)
    expected = [
        a for a in trail.all[: len(trail.all) - len(recent)] if a.occurred_at + RETENTION > now
    ]
    # a segment expires with its last entry: older entries of a live segment stay too
    assert got[len(got) - len(recent) :] == recent
    assert set(a.event_id for a in expected) <= set(a.event_id for a in got)
    assert [a.event_id for a in got] == [a.event_id for a in trail.all if a in got]


def test_a_token_stays_valid_across_archiving_and_a_prune() -> None:
    trail = Trail(keep=2, retention=timedelta(days=30))
    trail.add(3)
    first, token = trail.page(0, 2, T0)
    assert [a.event_id for a in first] == ["e0", "e1"] and token == 2
    trail.add(2)  # e0..e2 archived, the view holds e3, e4
    second, token = trail.page(2, 2, T0)
    assert [a.event_id for a in second] == ["e2", "e3"] and token == 4
    trail.add(4)  # e3..e6 archived too
    assert trail.snap is not None and trail.snap.archive is not None
    assert [(s.first, s.count) for s in trail.snap.archive.segments] == [(0, 3), (3, 4)]
    assert trail.page(2, 2, T0) == (second, 4)  # the same page, though e3 moved
    # both segments expire (the later one with e6); a token into them continues after them
    later = T0 + timedelta(days=6 + 30)
    trail.prune(later)
    rest, end = trail.page(4, 5, later)
    assert [a.event_id for a in rest] == ["e7", "e8"] and end is None
    assert [a.event_id for a in page_all(trail, 1, later)] == ["e7", "e8"]


def test_a_segment_deleted_before_the_view_knows_it_expired_is_skipped() -> None:
    trail = Trail(keep=1)
    trail.add(4)
    trail.stored.clear()  # e.g. a TTL monitor ran with a clock ahead of ours
    assert [a.event_id for a in page_all(trail, 10, T0)] == ["e3"]


def assigned(i: int, agent: str) -> AuditEntry:
    return entry(i, AuditKind.ASSIGNED, assignee_id=agent, to_queue=None)


def unassigned(i: int, agent: str, *, auto: bool = False) -> AuditEntry:
    kind = AuditKind.AUTO_UNASSIGNED if auto else AuditKind.UNASSIGNED
    return entry(i, kind, previous_assignee_id=agent, to_queue=None)


def test_the_waiting_period_survives_archiving() -> None:
    created = entry(1, AuditKind.CREATED, to_queue=Queue.NEW)
    trail = (
        created,
        assigned(2, "ana"),
        unassigned(3, "ana"),  # waiting since here
        unassigned(4, "bob", auto=True),  # stale: names a replaced assignee
        unassigned(5, "bob", auto=True),
        unassigned(6, "bob", auto=True),
    )
    state = ConversationState("org", "c", queue=Queue.NEW)
    whole = waiting_period(state, trail)
    assert whole is not None and whole[2] == trail[2]
    snap, moved = archive_audit(snapshot(trail), AuditRetention(keep=3))
    assert moved is not None and snap.archive is not None
    assert snap.audit == trail[3:]
    assert waiting_period(state, snap.audit, snap.archive.carry) == whole
    # without the carry the replay would pick a stale unassignment
    assert waiting_period(state, snap.audit) != whole
    assert replay(trail[3:], replay(trail[:3])) == replay(trail)
