"""The whole stack, as a developer runs it: ``inbox-run run`` starts the four service processes
(on non-default ports, with their own databases and consumer groups), then ``inbox-demo``
walks through the product features over gRPC and Kafka, then Ctrl-C (SIGTERM) stops it all."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_testing import Infra
from inbox_testing.stack import DEFAULT_PORTS, port_is_free, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

SERVICES = ("presence", "routing", "contacts", "replies")
FEATURE_NEEDS = {1: {"presence", "routing"}, 2: {"contacts"}, 3: {"contacts", "replies"}}


def _landed() -> list[str]:
    """Services whose process entry point exists (all four once every service has landed)."""
    return [s for s in SERVICES if importlib.util.find_spec(f"{s}_service.__main__") is not None]


@pytest.fixture
def stack(infra: Infra, tmp_path: Path) -> Iterator[dict[str, str]]:
    services = _landed()
    started = time.monotonic()
    with running_stack(infra, tmp_path, services) as running:
        print(f"stack healthy in {time.monotonic() - started:.1f}s: {running.timings}")
        yield {
            **running.env,
            "E2E_SERVICES": ",".join(services),
            "E2E_LOG": str(running.log_path),
        }
        # Ctrl-C equivalent: everything it started stops, cleanly.
        assert running.stop() == 0, running.log()
        assert all(port_is_free(p + running.offset) for p in DEFAULT_PORTS[:4]), (
            "a service outlived inbox-run"
        )
        assert "services stopped" in running.log_path.read_text()


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
