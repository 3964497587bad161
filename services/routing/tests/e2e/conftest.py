"""Fixtures of routing's end-to-end tests (routing as a process, over Kafka and gRPC)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from inbox_testing import Infra


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    """What an ingestor publishes with: acks from all replicas, small batches."""
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", linger_ms=5)
    await p.start()
    yield p
    await p.stop()
