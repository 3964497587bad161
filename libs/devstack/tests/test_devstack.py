"""End-to-end test of the devstack with real Kafka and FerretDB processes (no mocks).

Runs a private stack in a temporary DEVSTACK_DIR on non-default ports, so the shared stack on
9092/27017 is not disturbed. One test function walks the whole life cycle to pay for the
start-ups only once or twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inbox_devstack import Devstack, DevstackConfig, list_topics, topic_names
from pymongo import MongoClient

pytestmark = [pytest.mark.infra, pytest.mark.timeout(900)]


def _free(port: int) -> int:
    """``port`` if nothing listens on it, else a free ephemeral port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap if it was our child (zombie)
    return not Path(f"/proc/{pid}").exists()


def _mongo(uri: str) -> MongoClient[dict[str, Any]]:
    return MongoClient(uri, serverSelectionTimeoutMS=5000)


def _cli(cfg: DevstackConfig, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        DEVSTACK_DIR=str(cfg.devstack_dir),
        DEVSTACK_KAFKA_PORT=str(cfg.kafka_port),
        DEVSTACK_KAFKA_CONTROLLER_PORT=str(cfg.kafka_controller_port),
        DEVSTACK_MONGO_PORT=str(cfg.mongo_port),
    )
    return subprocess.run(
        [sys.executable, "-m", "inbox_devstack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    root = tmp_path_factory.mktemp("devstack")
    cfg = DevstackConfig.from_env(
        {
            "DEVSTACK_DIR": str(root),
            "DEVSTACK_KAFKA_PORT": str(_free(19092)),
            "DEVSTACK_KAFKA_CONTROLLER_PORT": str(_free(19093)),
            "DEVSTACK_MONGO_PORT": str(_free(27117)),
        }
    )
    stack = Devstack(cfg)
    try:
        yield stack
    finally:
        stack.down()


def test_lifecycle(private_stack: Devstack) -> None:
    stack = private_stack
    cfg = stack.config
    assert cfg.kafka_bootstrap == f"127.0.0.1:{cfg.kafka_port}"
    assert cfg.mongodb_uri == f"mongodb://127.0.0.1:{cfg.mongo_port}/"

    # --- up from nothing: provisions, starts, creates topics -------------------------------
    first = stack.up()
    assert first.all_up
    assert first.kafka.owner == "devstack" and first.ferretdb.owner == "devstack"
    kafka_pid, ferret_pid = first.kafka.pid, first.ferretdb.pid
    assert kafka_pid is not None and ferret_pid is not None
    assert cfg.kafka_pid_file.read_text().strip() == str(kafka_pid)
    assert cfg.ferretdb_pid_file.read_text().strip() == str(ferret_pid)
    assert set(topic_names()) <= set(first.topics)
    assert "Kafka Server started" in cfg.kafka_log_file.read_text()
    # FerretDB was built against the patched module copy, referenced by a relative path.
    go_mod = (cfg.build_dir / "ferretdb-runner" / "go.mod").read_text()
    assert "replace github.com/FerretDB/FerretDB => ../ferretdb-v1.24.2-patched" in go_mod
    assert str(cfg.devstack_dir) not in go_mod

    # --- status: both up, via API and CLI (exit 0) ------------------------------------------
    status = stack.status()
    assert status.all_up and status["kafka"].pid == kafka_pid
    assert status.kafka.address == cfg.kafka_bootstrap
    cli = _cli(cfg, "status")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert str(kafka_pid) in cli.stdout and str(ferret_pid) in cli.stdout

    # --- second up reuses the healthy stack: same pids, quick -----------------------------
    t0 = time.monotonic()
    second = stack.up()
    assert time.monotonic() - t0 < 20
    assert (second.kafka.pid, second.ferretdb.pid) == (kafka_pid, ferret_pid)

    # --- another devstack dir on the same ports: reuses the services as "external" ------------
    other = Devstack(dataclasses.replace(cfg, devstack_dir=cfg.devstack_dir.with_name("other")))
    reused = other.up()
    assert reused.all_up
    assert reused.kafka.owner == "external" and reused.kafka.pid is None
    assert reused.ferretdb.owner == "external" and reused.ferretdb.pid is None
    other.down()  # stops nothing: it started nothing
    assert (stack.status().kafka.pid, stack.status().ferretdb.pid) == (kafka_pid, ferret_pid)
    assert stack.is_healthy()

    # data written now must survive kill -9 and down/up
    marker = uuid.uuid4().hex
    with _mongo(cfg.mongodb_uri) as client:
        client["devstack_test"]["markers"].insert_one({"_id": marker})

    # --- kill -9 Kafka: up notices the dead pid and starts a new broker on the same data ---
    os.kill(kafka_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone(kafka_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(kafka_pid)
    assert not stack.status().kafka.up

    recovered = stack.up()
    assert recovered.all_up
    assert recovered.kafka.pid is not None and recovered.kafka.pid != kafka_pid
    assert recovered.ferretdb.pid == ferret_pid
    assert set(topic_names()) <= set(list_topics(cfg.kafka_bootstrap))

    # --- down: stops exactly what up started, no process or pid file left --------------------
    pids = [recovered.kafka.pid, ferret_pid]
    down = stack.down()
    assert not down.kafka.up and not down.ferretdb.up
    assert all(_gone(pid) for pid in pids)
    assert not cfg.kafka_pid_file.exists() and not cfg.ferretdb_pid_file.exists()
    cli = _cli(cfg, "status")
    assert cli.returncode == 3, cli.stdout + cli.stderr

    # --- up again via the CLI: data and topics survived ------------------------------------
    cli = _cli(cfg, "up")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cfg.kafka_bootstrap in cli.stdout and cfg.mongodb_uri in cli.stdout
    with _mongo(cfg.mongodb_uri) as client:
        assert client["devstack_test"]["markers"].find_one({"_id": marker}) is not None
    assert set(topic_names()) <= set(list_topics(cfg.kafka_bootstrap))

    cli = _cli(cfg, "down")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert not stack.status().kafka.up
    assert not cfg.kafka_pid_file.exists() and not cfg.ferretdb_pid_file.exists()
