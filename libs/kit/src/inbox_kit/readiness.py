"""Readiness from dependencies: a process is *ready* while MongoDB and Kafka answer.

Every ``PROBE_INTERVAL_SECONDS`` the runtime pings each dependency (MongoDB ``ping``, a Kafka
metadata request), each with ``PROBE_TIMEOUT_SECONDS``; ``FAILURES_TO_TRIP`` failed rounds in a
row (one slow answer under load is not an outage) turn readiness off (gRPC health ``""`` and
every service name → ``NOT_SERVING``) — within ~5 s —, the first round where all answer turns
it back on (within ~3 s), without a restart. Liveness (health service ``liveness``)
stays ``SERVING`` while the process runs: a dependency outage is not cured by restarting us.
Metrics: ``inbox_dependency_up{dependency}`` (1/0) and ``inbox_ready`` (1/0).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from prometheus_client import Gauge
from pymongo import AsyncMongoClient

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 2.0
FAILURES_TO_TRIP = 2

DEPENDENCY_UP = Gauge(
    "inbox_dependency_up",
    "1 while the dependency answered the last readiness probe, 0 while it did not.",
    ["dependency"],
)
READY = Gauge("inbox_ready", "1 while this process reports ready (all dependencies up).")

Check = Callable[[], Awaitable[object]]
OnChange = Callable[[bool], Awaitable[None]]


class MongoCheck:
    """``ping`` through a client of its own (one connection), so that the probe does not queue
    behind the service's own busy connection pool: it asks whether the database answers."""

    def __init__(self, uri: str, *, client_id: str) -> None:
        self._uri = uri
        self._client_id = client_id
        self._client: AsyncMongoClient[Any] | None = None

    async def __call__(self) -> object:
        if self._client is None:
            timeout_ms = int(PROBE_TIMEOUT_SECONDS * 1000)
            self._client = AsyncMongoClient(
                self._uri,
                maxPoolSize=1,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                socketTimeoutMS=timeout_ms,
                appname=f"{self._client_id}-readiness",
            )
        return await self._client.admin.command("ping")

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class KafkaCheck:
    """A metadata request for no topic (the brokers only) through a small client of its own.

    Asking for every topic's metadata each second made the broker describe, and this
    process decode, every partition of the cluster (a few ms of CPU on each side per probe);
    whether a broker answers is all the probe wants. If no known broker answers that, the
    full request (which also refreshes the brokers known) decides.
    """

    def __init__(self, bootstrap: str, *, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._client: AIOKafkaClient | None = None

    async def __call__(self) -> object:
        if self._client is None:
            client = AIOKafkaClient(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-readiness",
                request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000),
            )
            await client.bootstrap()
            self._client = client
        nodes = [broker.nodeId for broker in self._client.cluster.brokers()]
        random.shuffle(nodes)
        for node in nodes:
            try:
                response = await self._client.send(node, MetadataRequest([]))
            except KafkaError:
                continue
            if response.brokers:
                return response
        return await self._client.fetch_all_metadata()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class DependencyProbe:
    def __init__(
        self,
        checks: Mapping[str, Check],
        on_change: OnChange,
        *,
        interval: float = PROBE_INTERVAL_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        failures_to_trip: int = FAILURES_TO_TRIP,
    ) -> None:
        self._checks = dict(checks)
        self._on_change = on_change
        self._interval = interval
        self._timeout = timeout
        self._failures_to_trip = failures_to_trip
        self._failed_rounds = 0
        self.ready: bool | None = None

    async def probe_once(self) -> bool:
        names = list(self._checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self._checks[n](), self._timeout) for n in names),
            return_exceptions=True,
        )
        for name, result in zip(names, results, strict=True):
            up = not isinstance(result, BaseException)
            DEPENDENCY_UP.labels(name).set(1 if up else 0)
            if not up and self.ready is not False:
                log.warning(
                    "dependency %s did not answer: %r", name, result, extra={"dependency": name}
                )
        answered = all(not isinstance(r, BaseException) for r in results)
        self._failed_rounds = 0 if answered else self._failed_rounds + 1
        ready = answered or (
            self.ready is not False and self._failed_rounds < self._failures_to_trip
        )
        if ready != self.ready:
            self.ready = ready
            READY.set(1 if ready else 0)
            log.info("readiness changed", extra={"ready": ready})
            await self._on_change(ready)
        return ready

    async def run(self) -> None:
        try:
            while True:
                await self.probe_once()
                await asyncio.sleep(self._interval)
        finally:
            for check in self._checks.values():
                if isinstance(check, KafkaCheck | MongoCheck):
                    await check.close()


def standard_checks(mongodb_uri: str, kafka_bootstrap: str, *, client_id: str) -> dict[str, Check]:
    """The two dependencies every service has."""
    return {
        "mongodb": MongoCheck(mongodb_uri, client_id=client_id),
        "kafka": KafkaCheck(kafka_bootstrap, client_id=client_id),
    }
