"""The whole local stack as a developer runs it (``inbox-run run``), for end-to-end tests: on
free ports (``INBOX_PORT_OFFSET``), with its own databases and consumer groups
(``INBOX_RUN_ISOLATION``), against the test session's Kafka and MongoDB."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from inbox_testing.infra import Infra

#: Default ports of everything ``inbox-run`` starts (gRPC, metrics, the console's HTTP).
DEFAULT_PORTS = (7061, 7062, 7063, 7064, 9461, 9462, 9463, 9464, 8080)
DATABASES = ("presence", "routing", "contacts", "replies")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_offset() -> int:
    """An ``INBOX_PORT_OFFSET`` under which every default port is free (all below 32768)."""
    for _ in range(50):
        offset = random.randrange(2000, 5000, 10)
        if all(port_is_free(p + offset) for p in DEFAULT_PORTS):
            return offset
    raise RuntimeError("no free port range for the stack")


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    offset: int
    timings: dict[str, Any] = field(default_factory=dict)

    def log(self, last: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-last:]

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C equivalent (SIGTERM): everything it started stops; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextmanager
def running_stack(
    infra: Infra,
    workdir: Path,
    services: Sequence[str],
    *,
    ready_timeout: float = 100,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningStack]:
    """``inbox-run run`` with ``services`` (names as in ``INBOX_RUN_SERVICES``), healthy."""
    suffix = f"e2e{uuid.uuid4().hex[:8]}"
    offset = free_port_offset()
    env = {
        **os.environ,
        "INBOX_PORT_OFFSET": str(offset),
        "INBOX_RUN_ISOLATION": suffix,
        "INBOX_RUN_SERVICES": ",".join(services),
        "INBOX_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "INBOX_MONGODB_URI": infra.mongodb_uri,
        "INBOX_RUN_HEALTH_TIMEOUT": str(int(ready_timeout - 10)),
        "NO_COLOR": "1",
        **(extra_env or {}),
    }
    ready = workdir / "ready.json"
    log_path = workdir / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inbox_cli.run_all", "run", "--ready-file", str(ready)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = RunningStack(proc, env, log_path, offset)
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"inbox-run exited with {proc.returncode}:\n{stack.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack not healthy in {ready_timeout:.0f}s:\n{stack.log()}")
            time.sleep(0.2)
        stack.timings = json.loads(ready.read_text())
        yield stack
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        client: MongoClient[dict[str, Any]]
        with MongoClient(infra.mongodb_uri) as client:
            for name in DATABASES:
                client.drop_database(f"inbox_{name}_{suffix}")
