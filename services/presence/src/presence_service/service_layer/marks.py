"""Progress marks (``PresenceProgressed``): how far event time on the presence topic is final.

Every replica writes its progress floor (``progress.ProgressFloor``) to the store; the one
replica holding the ``progress_publisher`` lease reads them all, adds what dead replicas left
behind, and publishes the minimum to every partition every ``interval`` - also while idle.
Two replicas that both believe they hold the lease (the lease is not atomic on FerretDB)
publish two correct marks: every mark is a lower bound computed from shared state.

Order of reads: dead replicas' leftovers first, then the floors. A replica that ends a
leftover at its (past) stored deadline reports its lowered floor before it removes the
leftover (``handlers.holding_back``): a publisher that no longer sees the leftover then
reads the lowered floor.

Alone: while the floors the holder last read show no other replica (gone ones aside), it
reads them only every ``slow_interval`` instead of every round. A replica that starts (or
whose lease lapsed) writes its floor and then claims nothing until the holder has seen that
write (``handlers.join``: the holder stores what it read in the lease; it reads every round
from that read on); a mark computed before that read is published before the holder writes
the lease. A holder whose lease may have passed to another replica reads every round.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from presence_service.service_layer.handlers import Presence, own_floor, report_floor
from presence_service.service_layer.ports import ProgressPublisher, ReplicaFloor
from presence_service.service_layer.progress import MARKS_LEASE, global_watermark

log = logging.getLogger(__name__)

#: A floor written with this ``at`` marks its replica as gone at once (graceful stop).
GONE = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MarkTiming:
    interval: timedelta
    replica_ttl: timedelta
    lease_ttl: timedelta
    #: The lease holder's own floor (others read it after a hand-over), the leftovers of
    #: dead replicas and - while the holder is the only replica - the floors are refreshed
    #: this often.
    slow_interval: timedelta = timedelta(milliseconds=250)


@dataclass
class MarkState:
    holder: bool = False
    last_mark: datetime | None = None
    next_lease_check: datetime | None = None
    #: Until when the lease this replica last wrote is its own (None: not holding it).
    lease_valid_until: datetime | None = None
    next_floor_write: datetime | None = None
    next_orphan_check: datetime | None = None
    orphans: dict[str, datetime | None] = field(default_factory=dict)
    #: The floors as last read, and whether they showed another replica that is not gone
    #: (then they are read every round); a new holder assumes so until it has read them.
    floors: list[ReplicaFloor] = field(default_factory=list)
    others: bool = True
    next_floor_read: datetime | None = None
    #: Per replica, the liveness time of its floor as last read (stored with the lease: a
    #: joining replica waits until it appears there, ``handlers.join``).
    seen: dict[str, datetime] = field(default_factory=dict)


async def mark_round(
    p: Presence, publisher: ProgressPublisher | None, timing: MarkTiming, state: MarkState
) -> datetime | None:
    """One round: write this replica's floor when due; if it holds the lease, publish a
    mark. Returns the mark published, if any."""
    now = p.clock()
    if publisher is not None and (state.next_lease_check is None or now >= state.next_lease_check):
        until = now + timing.lease_ttl
        holder = await p.store.take_lease(MARKS_LEASE, p.replica_id, now, until, state.seen)
        if holder != state.holder:
            log.warning("progress marks lease %s", "taken" if holder else "lost")
            state.others = True  # a new holder reads every floor before it publishes
        state.holder = holder
        state.lease_valid_until = until if holder else None
        state.next_lease_check = now + timing.lease_ttl / 4
    if state.next_floor_write is None or now >= state.next_floor_write:
        await report_floor(p)
        # a follower's floor is what the holder waits for: keep it fresh
        state.next_floor_write = now + (timing.slow_interval if state.holder else timing.interval)
    if not state.holder or publisher is None:
        return None
    now = p.clock()
    alone_and_fresh = (
        not state.others
        and state.next_floor_read is not None
        and now < state.next_floor_read
        and state.lease_valid_until is not None
        and now < state.lease_valid_until
    )
    # own floor first: a replica whose first floor write lands after the read below serves
    # only from then on, so everything it appends is later than this value
    own = own_floor(p, now)
    if not alone_and_fresh:
        # alone and fresh: no other replica was there at the last read, and none claims
        # anything before this holder has seen it (``handlers.join``); a holder whose lease
        # may have passed to another reads again
        await _read_floors(p, timing, state)
    mark = global_watermark(
        own, p.replica_id, state.floors, state.orphans, p.clock(), timing.replica_ttl
    )
    if state.last_mark is not None and mark < state.last_mark:
        mark = state.last_mark  # never backwards from this publisher
    await publisher.publish_marks(mark)
    state.last_mark = mark
    return mark


async def _read_floors(p: Presence, timing: MarkTiming, state: MarkState) -> None:
    """Read every replica's floor (and, when due, what dead replicas left behind: before the
    floors, see the module doc)."""
    floors = await p.store.floors()
    now = p.clock()
    if state.next_orphan_check is None or now >= state.next_orphan_check:
        state.next_orphan_check = now + timing.slow_interval
        dead = [
            f.replica_id
            for f in floors
            if f.replica_id != p.replica_id and now - f.at > timing.replica_ttl
        ]
        for replica_id in set(dead) - set(state.orphans):
            log.warning(
                "replica taken for dead: the marks wait only for what it left in the store",
                extra={"replica": replica_id},
            )
        state.orphans = {r: await p.store.orphan_floor(r) for r in dead}
        for replica_id, left in state.orphans.items():
            if left is None:  # nothing left behind: forget the replica
                await p.store.drop_floor(replica_id)
        if dead:
            floors = await p.store.floors()  # after the leftovers (see the module doc)
    state.floors = floors
    state.next_floor_read = p.clock() + timing.slow_interval
    others = {f.replica_id: f.at for f in floors if f.replica_id != p.replica_id and f.at != GONE}
    state.others = bool(others)
    was_live = {r for r, at in state.seen.items() if now - at <= timing.replica_ttl}
    if any(now - at <= timing.replica_ttl for r, at in others.items() if r not in was_live):
        state.next_lease_check = None  # a replica (re)joins: tell it soon that it was seen
    state.seen = others


async def run_marks(p: Presence, publisher: ProgressPublisher | None, timing: MarkTiming) -> None:
    loop = asyncio.get_running_loop()
    state = MarkState()
    while True:
        started = loop.time()
        try:
            await mark_round(p, publisher, timing, state)
        except Exception:
            log.exception("progress round failed; will retry")
            state.next_lease_check = None
        elapsed = loop.time() - started
        if elapsed > 1.0:  # a follower's floor ages meanwhile (past the TTL it looks dead)
            log.warning("slow progress round", extra={"seconds": round(elapsed, 3)})
        await asyncio.sleep(max(0.0, timing.interval.total_seconds() - elapsed))


async def leave(p: Presence) -> None:
    """Graceful stop: mark this replica gone now, so the holder looks at its leftovers at
    once instead of waiting for the replica TTL."""
    await report_floor(p, at=GONE)
