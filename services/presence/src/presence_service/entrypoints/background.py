"""Background loops every replica runs: expiry of its own sessions, heartbeat write-back,
the sweeper of orphaned sessions and the outbox relay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from presence_service.service_layer import handlers, marks, outbox
from presence_service.service_layer.handlers import Presence
from presence_service.service_layer.io_priority import mark_background
from presence_service.service_layer.ports import EventPublisher, ProgressPublisher
from presence_service.settings import PresenceSettings

log = logging.getLogger(__name__)


def sweeper(p: Presence, settings: PresenceSettings) -> Callable[[], Awaitable[None]]:
    async def run_sweeper() -> None:
        mark_background()  # our writes queue behind request-path writes
        while True:
            try:
                await handlers.refresh_liveness(p, settings.outage_threshold())
                ended = await handlers.sweep_once(p)
                if ended:
                    log.info("expired %d sessions", ended)
            except Exception:
                log.exception("sweep failed; will retry")
            await asyncio.sleep(settings.sweep_interval_seconds)

    return run_sweeper


#: How often a replica looks at the deadlines of the sessions it serves.
EXPIRY_TICK_SECONDS = 0.02


def expirer(p: Presence) -> Callable[[], Awaitable[None]]:
    async def run_expirer() -> None:
        # request-path priority: a late decision holds the progress mark back. A round does
        # not wait for the previous one: sessions due meanwhile are not queued behind it.
        rounds: set[asyncio.Task[int]] = set()

        def done(task: asyncio.Task[int]) -> None:
            rounds.discard(task)
            if not task.cancelled() and task.exception() is None and task.result():
                log.info("expired %d sessions", task.result())

        try:
            while True:
                # a round only when a deadline may be due: no task 50 times a second for nothing
                if p.live.may_be_overdue(p.clock(), p.timing.handover_grace):
                    task = asyncio.create_task(handlers.expire_overdue(p))
                    rounds.add(task)
                    task.add_done_callback(done)
                await asyncio.sleep(EXPIRY_TICK_SECONDS)
        finally:
            for task in rounds:
                task.cancel()

    return run_expirer


def head_cache_warmer(p: Presence) -> Callable[[], Awaitable[None]]:
    async def warm_head_cache() -> None:  # once, off the request path
        mark_background()
        log.info("learned %d stored head hints", await p.learn_stored_heads())

    return warm_head_cache


def persister(p: Presence, settings: PresenceSettings) -> Callable[[], Awaitable[None]]:
    async def run_persister() -> None:
        while True:  # request-path priority: a stored heartbeat must not lag past the bound
            try:
                await handlers.persist_progress(p)
            except Exception:
                log.exception("heartbeat write-back failed; will retry")
            await asyncio.sleep(settings.persist_tick())

    return run_persister


def progress_marks(
    p: Presence, publisher: ProgressPublisher | None, settings: PresenceSettings
) -> Callable[[], Awaitable[None]]:
    async def run_progress_marks() -> None:
        await marks.run_marks(p, publisher, settings.mark_timing())

    return run_progress_marks


def retention(p: Presence, settings: PresenceSettings) -> Callable[[], Awaitable[None]]:
    async def run_retention() -> None:
        mark_background()
        keep = timedelta(seconds=settings.retention_seconds)
        while True:
            await asyncio.sleep(settings.retention_interval_seconds)
            try:
                records, ends = await handlers.prune_once(p, keep, settings.retention_batch)
                if records or ends:
                    log.info("pruned %d outbox records and %d session ends", records, ends)
            except Exception:
                log.exception("retention round failed; will retry")

    return run_retention


def relay(
    p: Presence, publisher: EventPublisher, settings: PresenceSettings
) -> Callable[[], Awaitable[None]]:
    async def run_relay() -> None:
        mark_background()
        await outbox.run_relay(
            p,
            publisher,
            scan_interval=settings.relay_scan_interval_seconds,
            min_age=timedelta(seconds=settings.relay_min_age_seconds),
        )

    return run_relay
