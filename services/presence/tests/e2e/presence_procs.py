"""A presence replica as a real process (``python -m presence_service``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inbox_testing import TEST_JWT_SECRET, Infra
from presence_test_helpers import FAST


class Proc:
    def __init__(self, infra: Infra, database: str, port: int, **env: Any) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        values = {
            "PRESENCE_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
            "PRESENCE_MONGODB_URI": infra.mongodb_uri,
            "PRESENCE_MONGODB_DATABASE": database,
            "PRESENCE_GRPC_PORT": str(port),
            "PRESENCE_METRICS_PORT": "0",
            "PRESENCE_JWT_SECRET": TEST_JWT_SECRET,
            "PRESENCE_LOG_LEVEL": "WARNING",
            **{f"PRESENCE_{k.upper()}": str(v) for k, v in FAST.items()},
            **{f"PRESENCE_{k.upper()}": str(v) for k, v in env.items()},
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "presence_service"], env={**os.environ, **values}
        )

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                assert self.proc.poll() is None, "presence exited"
                try:
                    r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "presence not ready"
                await asyncio.sleep(0.2)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
