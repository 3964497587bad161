"""A service that cannot reach a dependency at start says so in one line and exits 69."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aiokafka.errors import KafkaConnectionError
from inbox_kit.process import EXIT_UNAVAILABLE, redacted_uri, run_service, unreachable_dependency
from inbox_kit.settings import ServiceSettings
from inbox_testing import free_port
from pymongo.errors import ServerSelectionTimeoutError

SETTINGS = ServiceSettings(
    mongodb_uri="mongodb://app:s3cret@db.example:27017/", kafka_bootstrap_servers="k1:9092"
)


def test_a_mongodb_outage_is_named_with_the_uri_but_not_the_password() -> None:
    error = ServerSelectionTimeoutError(
        "db.example:27017: [Errno 111] Connection refused (configured timeouts: socketTimeoutMS"
        ": 20000.0ms), Timeout: 5.0s, Topology Description: <TopologyDescription ...>"
    )
    line = unreachable_dependency(error, SETTINGS)
    assert line == (
        "cannot start: MongoDB unreachable (ServerSelectionTimeoutError: db.example:27017: "
        "[Errno 111] Connection refused) at mongodb://app:***@db.example:27017/"
    )


def test_a_kafka_outage_is_named_with_the_bootstrap_servers() -> None:
    line = unreachable_dependency(KafkaConnectionError("Unable to bootstrap"), SETTINGS)
    assert line is not None and line.startswith("cannot start: Kafka unreachable")
    assert line.endswith("at k1:9092")


def test_other_errors_are_not_outages() -> None:
    assert unreachable_dependency(ValueError("bug"), SETTINGS) is None
    assert redacted_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"


def test_run_service_exits_69_on_an_outage_and_reraises_bugs() -> None:
    async def down() -> None:
        raise KafkaConnectionError("Unable to bootstrap")

    async def bug() -> None:
        raise ValueError("bug")

    with pytest.raises(SystemExit) as exited:
        run_service(SETTINGS, down)
    assert exited.value.code == EXIT_UNAVAILABLE
    with pytest.raises(ValueError, match="bug"):
        run_service(SETTINGS, bug)


def test_a_service_process_without_its_dependencies_logs_one_line() -> None:
    env = {
        **os.environ,
        "PRESENCE_MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/",
        "PRESENCE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "PRESENCE_GRPC_PORT": "0",
        "PRESENCE_METRICS_PORT": "0",
        # bootstrap checks the configuration before any I/O: a valid one, so the outage shows
        "INBOX_DEVELOPMENT_MODE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "presence_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    ours = [r for r in records if r["logger"] != "aiokafka"]  # aiokafka: one line per attempt
    assert [r["level"] for r in ours if r["level"] in ("ERROR", "CRITICAL")] == ["CRITICAL"]
    assert ours[-1]["message"].startswith("cannot start: ")
    assert "unreachable" in ours[-1]["message"]
    assert "Traceback" not in result.stderr
