"""Fixtures of the presence tests: an in-process presence service on the real stack."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # presence_test_helpers

from inbox_kit.runtime import ServiceRuntime
from inbox_testing import TEST_JWT_SECRET, Infra
from presence_service.bootstrap import bootstrap
from presence_service.service_layer.handlers import Presence
from presence_service.settings import PresenceSettings
from pymongo.asynchronous.database import AsyncDatabase

#: Short timings so expiry tests take seconds (heartbeat 0.5 s, timeout 1.5 s).
FAST: dict[str, Any] = {
    "heartbeat_interval_seconds": 0.5,
    "session_timeout_seconds": 1.5,
    "sweep_interval_seconds": 0.25,
    "expiry_grace_seconds": 0.2,
    "relay_scan_interval_seconds": 0.5,
    "relay_min_age_seconds": 3.0,
}


class Replicas:
    """Presence replicas started in-process on one test database."""

    def __init__(self, infra: Infra, database: str) -> None:
        self.infra, self.database = infra, database
        self.running: list[ServiceRuntime] = []

    async def start(self, **overrides: Any) -> tuple[ServiceRuntime, Presence]:
        runtime, presence = await bootstrap(
            presence_settings(self.infra, self.database, **overrides)
        )
        await runtime.start()
        self.running.append(runtime)
        return runtime, presence

    async def stop(self, runtime: ServiceRuntime) -> None:
        self.running.remove(runtime)
        await runtime.stop()


def presence_settings(infra: Infra, database: str, **overrides: Any) -> PresenceSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "mongodb_database": database,
        "grpc_port": 0,
        "metrics_port": 0,
        "jwt_secret": TEST_JWT_SECRET,
        "shutdown_grace_seconds": 0.5,
        **FAST,
        **overrides,
    }
    return PresenceSettings(**values)


@pytest.fixture
async def replicas(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> AsyncIterator[Replicas]:
    r = Replicas(infra, mongo_db.name)
    yield r
    for runtime in list(r.running):
        await r.stop(runtime)
