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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from presence_service.service_layer.handlers import Presence, own_floor, report_floor
from presence_service.service_layer.ports import ProgressPublisher
from presence_service.service_layer.progress import global_watermark

log = logging.getLogger(__name__)

LEASE = "progress_publisher"
#: A floor written with this ``at`` marks its replica as gone at once (graceful stop).
GONE = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MarkTiming:
    interval: timedelta
    replica_ttl: timedelta
    lease_ttl: timedelta
    #: The lease holder's own floor (others read it after a hand-over) and the leftovers of
    #: dead replicas are refreshed this often.
    slow_interval: timedelta = timedelta(milliseconds=250)


@dataclass
class MarkState:
    holder: bool = False
    last_mark: datetime | None = None
    next_lease_check: datetime | None = None
    next_floor_write: datetime | None = None
    next_orphan_check: datetime | None = None
    orphans: dict[str, datetime | None] = field(default_factory=dict)


async def mark_round(
    p: Presence, publisher: ProgressPublisher | None, timing: MarkTiming, state: MarkState
) -> datetime | None:
    """One round: write this replica's floor when due; if it holds the lease, publish a
    mark. Returns the mark published, if any."""
    now = p.clock()
    if publisher is not None and (state.next_lease_check is None or now >= state.next_lease_check):
        holder = await p.store.take_lease(LEASE, p.replica_id, now, now + timing.lease_ttl)
        if holder != state.holder:
            log.warning("progress marks lease %s", "taken" if holder else "lost")
        state.holder = holder
        state.next_lease_check = now + timing.lease_ttl / 4
    if state.next_floor_write is None or now >= state.next_floor_write:
        await report_floor(p)
        # a follower's floor is what the holder waits for: keep it fresh
        state.next_floor_write = now + (timing.slow_interval if state.holder else timing.interval)
    if not state.holder or publisher is None:
        return None
    if state.next_orphan_check is None or now >= state.next_orphan_check:
        state.next_orphan_check = now + timing.slow_interval
        now = p.clock()
        dead = [
            f.replica_id
            for f in await p.store.floors()
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
    floors = await p.store.floors()  # after the leftovers (see the module doc)
    now = p.clock()
    mark = global_watermark(
        own_floor(p, p.clock()), p.replica_id, floors, state.orphans, now, timing.replica_ttl
    )
    if state.last_mark is not None and mark < state.last_mark:
        mark = state.last_mark  # never backwards from this publisher
    await publisher.publish_marks(mark)
    state.last_mark = mark
    return mark


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
