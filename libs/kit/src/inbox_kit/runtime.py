"""Running a service process: start everything, serve until SIGTERM, stop in order.

A service's bootstrap builds a ``ServiceRuntime`` inside its ``inbox_kit.service.Service``
(nothing connects before ``start``) and its ``__main__`` calls ``serve_main``. Tests use
``start``/``stop`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from inbox_kit.grpc_server import GrpcServer, wait_for_shutdown_signal
from inbox_kit.kafka import EventPublisher
from inbox_kit.process import outage
from inbox_kit.readiness import Check, DependencyProbe

log = logging.getLogger(__name__)

BackgroundTask = Callable[[], Awaitable[None]]
StartupStep = Callable[[], Awaitable[None]]
Cleanup = Callable[[], Awaitable[None]]


@dataclass
class ServiceRuntime:
    name: str
    grpc: GrpcServer
    #: The process's one producer; started first, stopped after every loop that uses it.
    publisher: EventPublisher | None = None
    #: One-time steps before anything else starts, in order (indexes, a liveness check); a
    #: failure fails the start.
    startup: list[StartupStep] = field(default_factory=list)
    #: Long-running loops (sweepers, outbox relays); cancelled on stop.
    background: list[BackgroundTask] = field(default_factory=list)
    #: Run after everything else stopped, e.g. closing the database client.
    cleanups: list[Cleanup] = field(default_factory=list)
    shutdown_grace_seconds: float = 10.0
    #: Dependencies whose outage turns readiness off (``inbox_kit.readiness``).
    dependencies: Mapping[str, Check] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    async def start(self) -> None:
        for step in self.startup:
            await step()
        if self.publisher is not None:
            await self.publisher.start()
        for loop_fn in self.background:
            self._tasks.append(asyncio.create_task(_supervised(loop_fn), name=loop_fn.__qualname__))
        await self.grpc.start()
        if self.dependencies:
            probe = DependencyProbe(self.dependencies, self.grpc.set_ready)
            self._tasks.append(asyncio.create_task(_supervised(probe.run), name="readiness"))
        log.info("service started", extra={"grpc": self.grpc.address})

    async def stop(self) -> None:
        log.info("service stopping")
        await self.grpc.stop(self.shutdown_grace_seconds)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.publisher is not None:
            await self.publisher.stop()
        for cleanup in reversed(self.cleanups):
            await cleanup()
        log.info("service stopped")

    async def run_forever(self) -> None:
        await self.start()
        try:
            await wait_for_shutdown_signal()
        finally:
            await self.stop()


async def _supervised(loop_fn: BackgroundTask) -> None:
    """Keep a background loop alive: log a crash and restart it after a pause.

    An unreachable MongoDB or Kafka is an outage, not a bug: one line per retry, no traceback,
    and the pause grows to 10 s.
    """
    pause = 1.0
    while True:
        try:
            await loop_fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            what = outage(error)
            if what is None:
                pause = 1.0
                log.exception(
                    "background task crashed; restarting", extra={"task": loop_fn.__qualname__}
                )
            else:
                log.warning(
                    f"{what}; retrying in {pause:.0f} s", extra={"task": loop_fn.__qualname__}
                )
            await asyncio.sleep(pause)
            if what is not None:
                pause = min(pause * 2, 10.0)
