"""The Kafka readiness probe against the real broker: it asks for the brokers only."""

from __future__ import annotations

import pytest
from inbox_kit.readiness import KafkaCheck
from inbox_testing.infra import Infra

pytestmark = pytest.mark.infra


async def test_the_kafka_probe_is_answered_with_brokers_and_no_topic(infra: Infra) -> None:
    check = KafkaCheck(infra.kafka_bootstrap, client_id="kit-test")
    try:
        for _ in range(2):  # the first call bootstraps the probe's client
            response = await check()
            assert response.brokers  # type: ignore[attr-defined]
            assert response.topics == []  # type: ignore[attr-defined]
    finally:
        await check.close()
