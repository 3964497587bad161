"""The four service processes on the real stack, for the fuzz and authorization suites.

Each process gets its own database and consumer groups (reading from the latest offsets) and
the test secret; a watcher thread checks every service's health twice a second for the whole
session, so a suite can assert "SERVING throughout, no restart".
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inbox_testing import TEST_JWT_SECRET, Infra, free_port, stop_process, wait_serving
from pymongo import MongoClient

PREFIXES = {
    "presence": "PRESENCE_",
    "routing": "ROUTING_",
    "contacts": "CONTACTS_",
    "replies": "REPLIES_",
}
GROUPS = {
    "routing": ("CONSUMER_GROUP", "PRESENCE_CONSUMER_GROUP"),
    "contacts": ("CONSUMER_GROUP",),
    "replies": ("CONSUMER_GROUP",),
}


@dataclass
class Service:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    pid: int
    log: Path


@dataclass
class Stack:
    services: dict[str, Service]
    database_suffix: str
    unhealthy: list[str] = field(default_factory=list)
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def channel(self, name: str) -> grpc.Channel:
        if name not in self.channels:
            self.channels[name] = grpc.insecure_channel(self.services[name].address)
        return self.channels[name]

    def problems(self) -> list[str]:
        """Restarts, exits and non-SERVING health seen so far."""
        found = list(self.unhealthy)
        for s in self.services.values():
            if s.process.poll() is not None or s.process.pid != s.pid:
                found.append(f"{s.name} exited ({s.process.returncode}); see {s.log}")
        return found


def _env(infra: Infra, suffix: str, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(PREFIXES.values()))}
    env.pop("INBOX_DEVELOPMENT_MODE", None)  # the test secret is a proper one
    for name, p in PREFIXES.items():
        env |= {
            f"{p}KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
            f"{p}MONGODB_URI": infra.mongodb_uri,
            f"{p}MONGODB_DATABASE": f"inbox_{name}_{suffix}",
            f"{p}GRPC_HOST": "127.0.0.1",
            f"{p}GRPC_PORT": str(ports[name]),
            f"{p}METRICS_PORT": "0",
            f"{p}JWT_SECRET": TEST_JWT_SECRET,
            f"{p}LOG_LEVEL": "WARNING",
            f"{p}CONSUMER_OFFSET_RESET": "latest",
            f"{p}INITIAL_OFFSET": "latest",
        }
        for setting in GROUPS.get(name, ()):
            env[f"{p}{setting}"] = f"{name}-{setting.lower()}-{suffix}"
    env["REPLIES_CONTACTS_ADDRESS"] = f"127.0.0.1:{ports['contacts']}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _watch(stack: Stack, stop: threading.Event) -> None:
    stubs = {n: health_pb2_grpc.HealthStub(stack.channel(n)) for n in stack.services}
    while not stop.wait(0.5):
        for name, stub in stubs.items():
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            except grpc.RpcError as exc:
                stack.unhealthy.append(f"{time.strftime('%X')} {name} health: {exc.code().name}")
                continue
            if status != health_pb2.HealthCheckResponse.SERVING:
                stack.unhealthy.append(f"{time.strftime('%X')} {name} health: {status}")


@pytest.fixture(scope="session")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    suffix = f"grpc{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in PREFIXES}
    env = _env(infra, suffix, ports)
    logs = tmp_path_factory.mktemp("services")
    services: dict[str, Service] = {}
    try:
        for name in ("contacts", "presence", "routing", "replies"):
            log_path = logs / f"{name}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", f"{name}_service"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            services[name] = Service(
                name, f"127.0.0.1:{ports[name]}", process, process.pid, log_path
            )
        for s in services.values():
            wait_serving(s.address, s.process, timeout=90)
        stack = Stack(services, suffix)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(stack, stop), daemon=True)
        watcher.start()
        try:
            yield stack
        finally:
            stop.set()
            watcher.join(timeout=10)
            for channel in stack.channels.values():
                channel.close()
    finally:
        for s in services.values():
            stop_process(s.process)
        with MongoClient[dict[str, Any]](infra.mongodb_uri) as client:
            for name in PREFIXES:
                client.drop_database(f"inbox_{name}_{suffix}")
