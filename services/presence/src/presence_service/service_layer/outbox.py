"""The outbox relay: publishes stored events, in per-agent order, at least once.

Fast path: records claimed by this process are published right away (from a queue). Slow
path: every ``scan_interval`` the relay scans for records nobody published (this process was
killed before publishing, another replica died, Kafka was down) and publishes them. Every
publish of a record carries the record's deterministic event id, so duplicates are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from presence_service.domain.model import KEY_SEPARATOR
from presence_service.service_layer.handlers import Presence
from presence_service.service_layer.ports import EventPublisher, OutboxRecord

log = logging.getLogger(__name__)

MAX_CHAIN = 100
#: Claimed records published together by the fast path.
MAX_FAST_BATCH = 256


async def publish_record(p: Presence, publisher: EventPublisher, record: OutboxRecord) -> None:
    """Publish ``record`` after any unpublished predecessors of the same agent."""
    chain = [record]
    prev_key = record.prev_key
    while (
        prev_key is not None
        and len(chain) < MAX_CHAIN
        and not p.progress.recently_published(prev_key)
    ):
        prev = await p.store.get_outbox(prev_key)
        if prev is None or prev.published:
            break
        chain.append(prev)
        prev_key = prev.prev_key
    for item in reversed(chain):
        await publisher.publish(item)
        p.progress.published(item.key)
        # the stored flag is for other replicas' scans and restarts: off the publish path
        # (under a burst the write gate would hold every next publish back)
        p.spawn(p.store.mark_published(item.key, p.clock()))


async def publish_batch(
    p: Presence, publisher: EventPublisher, records: list[OutboxRecord]
) -> None:
    """Publish records claimed here: agents concurrently (their marks are written as one
    group), each agent's records in claim order."""
    by_agent: dict[str, list[OutboxRecord]] = {}
    for record in records:
        by_agent.setdefault(record.key.rpartition(KEY_SEPARATOR)[0], []).append(record)

    async def one_agent(items: list[OutboxRecord]) -> None:
        for item in items:
            try:
                await publish_record(p, publisher, item)
            except Exception:
                log.exception("publish failed; the outbox scan will retry", extra={"key": item.key})
                for rest in items[items.index(item) :]:
                    p.progress.hand_to_scan(rest.key)
                return  # keep the agent's order: the scan publishes the rest after this one

    await asyncio.gather(*(one_agent(items) for items in by_agent.values()))


async def publish_pending(
    p: Presence,
    publisher: EventPublisher,
    *,
    min_age: timedelta,
    limit: int = 1000,
    full_scan: bool = False,
) -> int:
    """Publish every record older than ``min_age`` that is still unpublished. Periodic scans
    read the pending markers only; ``full_scan`` (at startup) reads the whole outbox."""
    pending = await p.store.unpublished(p.clock() - min_age, limit, full_scan=full_scan)
    done: set[str] = set()
    for record in pending:  # ordered by agent and sequence
        if (
            record.key in done
            or p.progress.is_in_flight(record.key)
            or p.progress.recently_published(record.key)
        ):
            continue  # the fast path holds it, or published it and its stored flag is on
            # its way (behind a burst of writes): publishing it here would duplicate it
        await publish_record(p, publisher, record)
        done.add(record.key)
    if pending:
        log.info("relay published %d pending events", len(pending))
    return len(pending)


async def run_relay(
    p: Presence,
    publisher: EventPublisher,
    *,
    scan_interval: float,
    min_age: timedelta,
) -> None:
    """Forever: publish claimed records as they come; scan for stragglers periodically."""
    loop = asyncio.get_running_loop()
    next_scan = loop.time()  # scan at start: pick up what a killed process left behind
    age = timedelta(0)
    full_scan = True
    while True:
        if loop.time() >= next_scan:
            try:
                await publish_pending(p, publisher, min_age=age, full_scan=full_scan)
                age, full_scan = min_age, False
            except Exception:
                log.exception("outbox scan failed; will retry")
            next_scan = loop.time() + scan_interval
        record: OutboxRecord | None = None
        with contextlib.suppress(TimeoutError):
            record = await asyncio.wait_for(
                p.claimed.get(), timeout=max(0.0, next_scan - loop.time())
            )
        if record is not None:
            batch = [record]
            while len(batch) < MAX_FAST_BATCH and not p.claimed.empty():
                batch.append(p.claimed.get_nowait())
            await publish_batch(p, publisher, batch)
