"""A service refuses to start with the built-in development secret unless development mode
is on (docs/authorization.md); with INBOX_DEVELOPMENT_MODE=1 the same process serves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from inbox_testing import Infra, free_port, stop_process, wait_serving

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

SERVICES = {
    "presence": "PRESENCE_",
    "routing": "ROUTING_",
    "contacts": "CONTACTS_",
    "replies": "REPLIES_",
}


def _env(infra: Infra, prefix: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("JWT_SECRET")}
    env.pop("INBOX_DEVELOPMENT_MODE", None)
    return env | {
        f"{prefix}KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        f"{prefix}MONGODB_URI": infra.mongodb_uri,
        f"{prefix}GRPC_PORT": str(port),
        f"{prefix}METRICS_PORT": "0",
        f"{prefix}LOG_LEVEL": "WARNING",
    }


def test_every_service_refuses_the_development_secret_outside_development_mode(
    infra: Infra,
) -> None:
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"{name}_service"],
            env=_env(infra, prefix, free_port()),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, prefix in SERVICES.items()
    }
    for name, process in processes.items():
        try:
            _, err = process.communicate(timeout=60)
        finally:
            stop_process(process)
        assert process.returncode == 1, name
        last = err.decode().strip().splitlines()[-1]
        assert last.startswith("refusing to start:") and "INBOX_DEVELOPMENT_MODE" in last, last


def test_development_mode_accepts_it(infra: Infra) -> None:
    port = free_port()
    env = _env(infra, "PRESENCE_", port) | {"INBOX_DEVELOPMENT_MODE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "presence_service"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_serving(f"127.0.0.1:{port}", process, timeout=60)
    finally:
        stop_process(process)
