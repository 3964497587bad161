"""The whole stack, as a developer runs it: ``inbox-run run`` starts the four service processes
(on non-default ports, with their own databases and consumer groups), then ``inbox-demo``
walks through the product features over gRPC and Kafka, then Ctrl-C (SIGTERM) stops it all."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_testing import Infra
from pymongo import MongoClient

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

SERVICES = ("presence", "routing", "contacts", "replies")
DEFAULT_PORTS = (50061, 50062, 50063, 50064, 9461, 9462, 9463, 9464)
FEATURE_NEEDS = {1: {"presence", "routing"}, 2: {"contacts"}, 3: {"contacts", "replies"}}


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_offset() -> int:
    for _ in range(50):
        offset = random.randrange(2000, 5000, 10)
        if all(_free(p + offset) for p in DEFAULT_PORTS):
            return offset
    raise RuntimeError("no free port range for the stack")


def _landed() -> list[str]:
    """Services whose process entry point exists (all four once every service has landed)."""
    return [s for s in SERVICES if importlib.util.find_spec(f"{s}_service.__main__") is not None]


@pytest.fixture
def stack(infra: Infra, tmp_path: Path) -> Iterator[dict[str, str]]:
    services = _landed()
    suffix = f"e2e{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "INBOX_PORT_OFFSET": str(_port_offset()),
        "INBOX_RUN_ISOLATION": suffix,
        "INBOX_RUN_SERVICES": ",".join(services),
        "INBOX_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "INBOX_MONGODB_URI": infra.mongodb_uri,
        "INBOX_RUN_HEALTH_TIMEOUT": "90",
        "NO_COLOR": "1",
    }
    ready = tmp_path / "ready.json"
    log_path = tmp_path / "run.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inbox_cli.run_all", "run", "--ready-file", str(ready)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 100
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"inbox-run exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"stack not healthy in 100s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        timings = json.loads(ready.read_text())
        print(f"stack healthy in {time.monotonic() - started:.1f}s: {timings}")
        yield {**env, "E2E_SERVICES": ",".join(services), "E2E_LOG": str(log_path)}
        # Ctrl-C equivalent: everything it started stops, cleanly.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-4000:]
        offset = int(env["INBOX_PORT_OFFSET"])
        assert all(_free(p + offset) for p in DEFAULT_PORTS[:4]), "a service outlived inbox-run"
        assert "services stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with MongoClient(infra.mongodb_uri) as client:
            for name in SERVICES:
                client.drop_database(f"inbox_{name}_{suffix}")


def test_demo_passes_against_the_running_stack(stack: dict[str, str]) -> None:
    services = set(stack["E2E_SERVICES"].split(","))
    features = [n for n, needs in FEATURE_NEEDS.items() if needs <= services]
    assert features, f"no demo feature can run with {services}"
    result = subprocess.run(
        [sys.executable, "-m", "inbox_cli.demo", "--only", ",".join(map(str, features))],
        env=stack,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    if 1 not in features:
        pytest.skip(f"routing not landed yet: ran demo features {features} only")
