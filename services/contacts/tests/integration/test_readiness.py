"""Readiness follows the dependencies (inbox_kit.readiness; its metric is unit-tested: other
services in this test process probe the shared database): a contacts process on a database
of its own goes NOT_SERVING within seconds when that database stops, and SERVING again by
itself when it returns; liveness stays SERVING throughout."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from contacts_service.bootstrap import bootstrap
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inbox_devstack.config import DevstackConfig
from inbox_devstack.ferret import probe
from inbox_kit.grpc_server import LIVENESS_SERVICE
from inbox_testing import Infra, free_port, stop_process, wait_until

from .conftest import settings_for

pytestmark = pytest.mark.infra

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class PrivateFerret:
    """A FerretDB process of this test's own (the devstack's binary), to stop and restart."""

    def __init__(self, data_dir: Path) -> None:
        self.port = int(os.environ.get("INBOX_TEST_EXTRA_PORT") or free_port())
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self._data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = DevstackConfig.from_env().ferretdb_binary
        self.process = subprocess.Popen(
            [
                str(binary),
                "-listen-addr",
                f"127.0.0.1:{self.port}",
                "-data-dir",
                str(self._data_dir),
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not probe(self.uri, timeout=1.0):
            assert self.process.poll() is None, "FerretDB exited"
            assert time.monotonic() < deadline, "FerretDB did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@pytest.fixture
def ferret(tmp_path: Path) -> Iterator[PrivateFerret]:
    server = PrivateFerret(tmp_path / "ferretdb")
    server.start()
    yield server
    server.stop()


async def test_readiness_goes_off_while_the_database_is_down_and_back_by_itself(
    infra: Infra, jwt_secret: str, ferret: PrivateFerret
) -> None:
    settings = settings_for(
        infra, jwt_secret, "readiness", mongodb_uri=ferret.uri, consume=False, cache_max_entries=0
    )
    service = bootstrap(settings)
    await service.runtime.start()
    try:
        async with grpc.aio.insecure_channel(service.runtime.grpc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(name: str = "") -> int:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
                return int(reply.status)

            async def ready() -> bool:
                return await status() == SERVING

            async def not_ready() -> bool:
                return await status() == NOT_SERVING

            await wait_until(ready, timeout=15)
            await asyncio.to_thread(ferret.stop)
            stopped = time.monotonic()
            await wait_until(not_ready, timeout=10)
            assert time.monotonic() - stopped < 10
            assert await status("inbox.contacts.v1.ContactsService") == NOT_SERVING
            assert await status(LIVENESS_SERVICE) == SERVING

            await asyncio.to_thread(ferret.start)
            await wait_until(ready, timeout=20)
            assert await status(LIVENESS_SERVICE) == SERVING
    finally:
        await service.runtime.stop()
