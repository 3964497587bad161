"""The one shape of a service: ``bootstrap(settings, **overrides) -> Service``, then
``serve_main`` in ``__main__``.

``bootstrap`` builds every component up front and does no I/O (the database client and the
producer connect lazily, grpc.aio binds its server to the loop that builds it), so a unit test
can build the whole service with fakes passed as overrides and look at every part. What must
happen once before serving (indexes, a liveness check) is a ``startup`` step of the runtime;
everything runs between ``start()`` and ``stop()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from inbox_kit.gc_tuning import tune_gc
from inbox_kit.logging import configure_logging
from inbox_kit.metrics import start_metrics_server
from inbox_kit.process import run_service
from inbox_kit.runtime import ServiceRuntime
from inbox_kit.settings import ServiceSettings


@dataclass
class Service:
    """A built, not yet started service. Subclasses add the components tests look at."""

    runtime: ServiceRuntime

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()

    async def run_forever(self) -> None:
        await self.runtime.run_forever()


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def serve_main(name: str, settings: SettingsT, bootstrap: Callable[[SettingsT], Service]) -> None:
    """The body of every service's ``main()``: the collector's thresholds, JSON logs, /metrics,
    serve until SIGTERM (exit 69 with one log line when MongoDB or Kafka is unreachable at
    start)."""
    tune_gc()
    configure_logging(name, settings.log_level)
    start_metrics_server(settings.grpc_host, settings.metrics_port)

    async def serve() -> None:
        # built inside the running loop: grpc.aio binds its server to the loop that creates it
        await bootstrap(settings).run_forever()

    run_service(settings, serve)
